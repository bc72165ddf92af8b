import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, unlinkSync, existsSync, readdirSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FailedPreconditionError } from '../../src/core/errors.js';
import { ExecRunner } from '../../src/host/runner.js';
import { ensureSshKey, quoteShellArg, sshArgv, waitForSshBanner } from '../../src/host/ssh.js';

let dir: string;
const servers: Server[] = [];
const sockets: Socket[] = [];

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'banger-ssh-'));
});
afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  await Promise.all(servers.splice(0).map((s) => new Promise((r) => s.close(r))));
  rmSync(dir, { recursive: true, force: true });
});

const mode = (p: string) => statSync(p).mode & 0o777;

describe('ensureSshKey', () => {
  it('makes an ed25519 key pair once and returns the same public key the second time', async () => {
    const runner = new ExecRunner();
    const keyPath = join(dir, 'data', 'banger', 'ssh', 'id_ed25519');
    const pub1 = await ensureSshKey(runner, keyPath);
    expect(pub1).toMatch(/^ssh-ed25519 [A-Za-z0-9+/]+=* banger$/);
    expect(readFileSync(`${keyPath}.pub`, 'utf8').trim()).toBe(pub1);
    expect(mode(join(dir, 'data', 'banger', 'ssh'))).toBe(0o700);
    expect(mode(keyPath)).toBe(0o600);
    const private1 = readFileSync(keyPath, 'utf8');
    expect(private1).toMatch(/^-----BEGIN OPENSSH PRIVATE KEY-----/);

    const pub2 = await ensureSshKey(runner, keyPath);
    expect(pub2).toBe(pub1);
    expect(readFileSync(keyPath, 'utf8')).toBe(private1);
    // The public key really belongs to the private one.
    expect(execFileSync('ssh-keygen', ['-y', '-f', keyPath], { encoding: 'utf8' }).split(' ')[1]).toBe(pub1.split(' ')[1]);
    expect(readdirSync(join(dir, 'data', 'banger', 'ssh')).sort()).toEqual(['id_ed25519', 'id_ed25519.pub']);
  });

  it('tightens loose modes and restores a missing public key from the private one', async () => {
    const runner = new ExecRunner();
    const keyPath = join(dir, 'ssh', 'id_ed25519');
    const pub = await ensureSshKey(runner, keyPath);
    execFileSync('chmod', ['0755', join(dir, 'ssh')]);
    execFileSync('chmod', ['0644', keyPath]);
    unlinkSync(`${keyPath}.pub`);
    const restored = await ensureSshKey(runner, keyPath);
    expect(restored.split(' ').slice(0, 2)).toEqual(pub.split(' ').slice(0, 2));
    expect(readFileSync(`${keyPath}.pub`, 'utf8').trim()).toBe(restored);
    expect(mode(join(dir, 'ssh'))).toBe(0o700);
    expect(mode(keyPath)).toBe(0o600);
  });
});

describe('sshArgv', () => {
  it('builds a non-interactive OpenSSH command with a connect timeout', () => {
    expect(sshArgv({ keyPath: '/k/id', guestIp: '172.16.0.2', command: ['uname', '-a'], tty: false })).toEqual([
      'ssh',
      '-i',
      '/k/id',
      '-o',
      'StrictHostKeyChecking=no',
      '-o',
      'UserKnownHostsFile=/dev/null',
      '-o',
      'LogLevel=ERROR',
      '-o',
      'ConnectTimeout=5',
      '-o',
      'IdentitiesOnly=yes',
      '-o',
      'BatchMode=yes',
      'root@172.16.0.2',
      '--',
      'uname',
      '-a',
    ]);
  });

  it('forces a tty for interactive sessions and omits -- without a command', () => {
    const argv = sshArgv({ keyPath: '/k/id', guestIp: '172.16.0.6', command: [], tty: true, connectTimeoutS: 2 });
    expect(argv).toContain('ConnectTimeout=2');
    expect(argv.slice(-2)).toEqual(['-t', 'root@172.16.0.6']);
    expect(argv).not.toContain('--');
  });

  it('rejects a connect timeout that OpenSSH would not take', () => {
    expect(() => sshArgv({ keyPath: 'k', guestIp: '10.0.0.2', command: [], tty: false, connectTimeoutS: 0.5 })).toThrow(
      /whole number of seconds/,
    );
  });
});

describe('shell quoting of the remote command', () => {
  // What the guest's shell does with the words ssh sends: joins them with spaces and runs `sh -c`.
  const remoteShell = (words: string[]) =>
    execFileSync('sh', ['-c', words.join(' ')], { encoding: 'utf8', env: { HOME: '/home/remote', PATH: process.env.PATH } });

  it('keeps quoted words and dollar signs literal', () => {
    const argv = sshArgv({ keyPath: 'k', guestIp: '10.0.0.2', command: ['echo', 'a b', '$HOME'], tty: false });
    const words = argv.slice(argv.indexOf('--') + 1);
    expect(remoteShell(words)).toBe('a b $HOME\n');
  });

  it('round-trips awkward arguments through a real sh -c', () => {
    const args = [
      'plain',
      '',
      'two words',
      "it's",
      '"double"',
      '$(touch /tmp/banger-pwned)',
      '`id`',
      'semi;colon',
      'pipe|amp&',
      'glob*?[a]',
      '~',
      'A=b',
      'back\\slash',
      'new\nline',
      'tab\there',
      "'",
      "''",
      '-n',
      'ünïcødé',
      '#comment',
      '!bang',
    ];
    const out = remoteShell(['printf', quoteShellArg('%s\\0'), ...args.map(quoteShellArg)]);
    expect(out.split('\0').slice(0, -1)).toEqual(args);
    expect(existsSync('/tmp/banger-pwned')).toBe(false);
  });

  it('leaves plain words unquoted so argv stays readable', () => {
    expect(quoteShellArg('/usr/bin/env')).toBe('/usr/bin/env');
    expect(quoteShellArg('--flag=1')).toBe("'--flag=1'");
    expect(quoteShellArg('a b')).toBe("'a b'");
    expect(quoteShellArg("it's")).toBe("'it'\\''s'");
    expect(quoteShellArg('')).toBe("''");
  });
});

describe('waitForSshBanner', () => {
  function listen(onConnection: (socket: Socket) => void, port = 0): Promise<number> {
    const server = createServer((socket) => {
      sockets.push(socket);
      onConnection(socket);
    });
    servers.push(server);
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => resolve((server.address() as { port: number }).port));
    });
  }

  async function freePort(): Promise<number> {
    const server = createServer();
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const { port } = server.address() as { port: number };
    await new Promise((r) => server.close(r));
    return port;
  }

  it('resolves with the identification line a slow server sends', async () => {
    const port = await listen((s) => setTimeout(() => s.write('SSH-2.0-test\r\n'), 300));
    const started = Date.now();
    await expect(waitForSshBanner('127.0.0.1', port, { timeoutMs: 5000 })).resolves.toBe('SSH-2.0-test');
    expect(Date.now() - started).toBeGreaterThanOrEqual(250);
  });

  it('skips lines before the identification line', async () => {
    const port = await listen((s) => s.write('hello there\r\nSSH-2.0-OpenSSH_9.2p1 Debian-2\r\n'));
    await expect(waitForSshBanner('127.0.0.1', port, { timeoutMs: 2000 })).resolves.toBe('SSH-2.0-OpenSSH_9.2p1 Debian-2');
  });

  it('times out on a server that accepts and never speaks, naming the address and the wait', async () => {
    const port = await listen(() => {});
    const started = Date.now();
    const err = await waitForSshBanner('127.0.0.1', port, { timeoutMs: 800 }).then(
      () => null,
      (e: Error) => e,
    );
    const took = Date.now() - started;
    expect(err).toBeInstanceOf(FailedPreconditionError);
    expect(err?.message).toMatch(new RegExp(`^no SSH banner from 127\\.0\\.0\\.1:${port} after 0\\.[89]s \\(1 attempt, last: connected but no banner\\)`));
    expect(took).toBeGreaterThanOrEqual(780);
    expect(took).toBeLessThan(2000);
  });

  it('keeps retrying a refused port until a server starts listening on it', async () => {
    const port = await freePort();
    const attempts: string[] = [];
    const waiting = waitForSshBanner('127.0.0.1', port, {
      timeoutMs: 5000,
      onAttempt: (_n, reason) => attempts.push(reason),
    });
    await new Promise((r) => setTimeout(r, 500));
    await listen((s) => s.write('SSH-2.0-late\r\n'), port);
    await expect(waiting).resolves.toBe('SSH-2.0-late');
    expect(attempts.length).toBeGreaterThanOrEqual(2);
    expect(attempts[0]).toBe('ECONNREFUSED');
  });

  it('gives up on a refused port with the reason', async () => {
    const port = await freePort();
    await expect(waitForSshBanner('127.0.0.1', port, { timeoutMs: 400 })).rejects.toThrow(
      new RegExp(`no SSH banner from 127\\.0\\.0\\.1:${port} after 0\\.\\ds \\(\\d+ attempts, last: ECONNREFUSED\\)`),
    );
  });

  it('stops when aborted', async () => {
    const port = await freePort();
    const controller = new AbortController();
    setTimeout(() => controller.abort(new Error('vm stopped')), 200);
    const started = Date.now();
    await expect(waitForSshBanner('127.0.0.1', port, { timeoutMs: 10_000, signal: controller.signal })).rejects.toThrow(
      'vm stopped',
    );
    expect(Date.now() - started).toBeLessThan(1000);
  });
});
