// SSH to guests: banger's one key pair, the OpenSSH client argv, and waiting for a guest's sshd banner.
import { chmod, mkdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { dirname } from 'node:path';
import { FailedPreconditionError, InvalidArgumentError } from '../core/errors.js';
import type { Runner } from '../core/ports.js';

/**
 * Makes the ed25519 key pair at keyPath (and keyPath.pub) unless it exists; returns the public key line.
 * The directory ends up 0700 and the private key 0600, as OpenSSH insists.
 */
export async function ensureSshKey(runner: Runner, keyPath: string): Promise<string> {
  const dir = dirname(keyPath);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await chmod(dir, 0o700);
  if (!(await exists(keyPath))) {
    // Generated under a temporary name and renamed, so a crash never leaves half a key pair at keyPath.
    const tmp = `${keyPath}.tmp-${process.pid}`;
    await rm(tmp, { force: true });
    await rm(`${tmp}.pub`, { force: true });
    try {
      await runner.run(['ssh-keygen', '-t', 'ed25519', '-N', '', '-C', 'banger', '-f', tmp, '-q']);
      await rename(`${tmp}.pub`, `${keyPath}.pub`);
      await rename(tmp, keyPath);
    } finally {
      await rm(tmp, { force: true });
      await rm(`${tmp}.pub`, { force: true });
    }
  }
  await chmod(keyPath, 0o600);
  let pub: string;
  if (await exists(`${keyPath}.pub`)) {
    pub = await readFile(`${keyPath}.pub`, 'utf8');
  } else {
    // The public half went missing: derive it again from the private key.
    pub = (await runner.run(['ssh-keygen', '-y', '-f', keyPath])).stdout;
    await writeFile(`${keyPath}.pub`, `${pub.trim()}\n`, { mode: 0o644 });
  }
  return pub.trim();
}

export interface SshArgvOptions {
  keyPath: string;
  guestIp: string;
  /** The remote command as an argument vector; empty for a login shell. */
  command: string[];
  /** Force a pseudo-terminal (interactive sessions). */
  tty: boolean;
  connectTimeoutS?: number;
}

/** The OpenSSH argv that runs command as root on the guest, failing fast when it is unreachable. */
export function sshArgv(options: SshArgvOptions): string[] {
  const timeout = options.connectTimeoutS ?? 5;
  if (!Number.isInteger(timeout) || timeout < 1) {
    throw new InvalidArgumentError(`ssh connect timeout must be a whole number of seconds ≥ 1, got ${timeout}`);
  }
  const argv = [
    'ssh',
    '-i',
    options.keyPath,
    '-o',
    'StrictHostKeyChecking=no',
    '-o',
    'UserKnownHostsFile=/dev/null',
    '-o',
    'LogLevel=ERROR',
    '-o',
    `ConnectTimeout=${timeout}`,
    '-o',
    'IdentitiesOnly=yes',
    '-o',
    'BatchMode=yes',
  ];
  if (options.tty) argv.push('-t');
  argv.push(`root@${options.guestIp}`);
  // ssh joins the words after the destination with spaces and the remote shell parses them again,
  // so each word is quoted here to reach the guest as the same argument.
  if (options.command.length > 0) argv.push('--', ...options.command.map(quoteShellArg));
  return argv;
}

/** Quotes one argument for a POSIX shell: `it's` -> `'it'\''s'`; plain words stay as they are. */
export function quoteShellArg(arg: string): string {
  if (/^[A-Za-z0-9_@%+,./:-]+$/.test(arg)) return arg;
  return `'${arg.replaceAll("'", `'\\''`)}'`;
}

export interface WaitForSshOptions {
  timeoutMs: number;
  signal?: AbortSignal;
  /** Called after each failed attempt, with its number (from 1) and why it failed. */
  onAttempt?: (attempt: number, reason: string) => void;
}

/**
 * Connects to host:port over TCP until the server sends its identification line ("SSH-2.0-OpenSSH_9.2p1
 * Debian-2"), retrying refused and silent connections until timeoutMs; resolves with that line.
 */
export async function waitForSshBanner(host: string, port: number, options: WaitForSshOptions): Promise<string> {
  const started = Date.now();
  const deadline = started + options.timeoutMs;
  let attempt = 0;
  let reason = 'no attempt made';
  let pauseMs = 50;
  for (;;) {
    options.signal?.throwIfAborted();
    attempt += 1;
    const remaining = deadline - Date.now();
    try {
      return await readBanner(host, port, Math.min(remaining, 3000), options.signal);
    } catch (err) {
      options.signal?.throwIfAborted();
      reason = (err as Error).message;
      options.onAttempt?.(attempt, reason);
    }
    const left = deadline - Date.now();
    if (left <= 0) break;
    await sleep(Math.min(pauseMs, left), options.signal);
    pauseMs = Math.min(pauseMs * 2, 500);
  }
  const waited = ((Date.now() - started) / 1000).toFixed(1);
  throw new FailedPreconditionError(
    `no SSH banner from ${host}:${port} after ${waited}s (${attempt} attempt${attempt === 1 ? '' : 's'}, last: ${reason}); ` +
      `is sshd running in the guest? its console log shows how boot went`,
    { details: { host, port, attempts: attempt, waitedMs: Date.now() - started } },
  );
}

// One attempt: connect, read lines until one starts with "SSH-" (RFC 4253 4.2 allows other lines before it).
function readBanner(host: string, port: number, timeoutMs: number, signal?: AbortSignal): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host, port });
    let buffered = '';
    let done = false;
    const finish = (err: Error | null, line?: string) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      socket.destroy();
      if (err) reject(err);
      else resolve(line as string);
    };
    const onAbort = () => finish(signal?.reason instanceof Error ? signal.reason : new Error('aborted'));
    const timer = setTimeout(
      () => finish(new Error(socket.connecting ? 'connect timed out' : 'connected but no banner')),
      Math.max(timeoutMs, 1),
    );
    signal?.addEventListener('abort', onAbort, { once: true });
    socket.setEncoding('latin1');
    socket.on('data', (chunk: string) => {
      buffered += chunk;
      let nl: number;
      while ((nl = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, nl).replace(/\r$/, '');
        buffered = buffered.slice(nl + 1);
        if (line.startsWith('SSH-')) return finish(null, line);
      }
      if (buffered.length > 8192) finish(new Error('server sent no SSH identification line'));
    });
    socket.on('error', (err: NodeJS.ErrnoException) => finish(new Error(err.code ?? err.message)));
    socket.on('close', () => finish(new Error('connection closed before the banner')));
  });
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
}
