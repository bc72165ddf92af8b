// The daemon's client: HTTP over the Unix socket, auto-start, and stale-daemon replacement.
import { createConnection } from 'node:net';
import { existsSync, mkdirSync, openSync, closeSync, readFileSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { LoadedConfig } from '../core/config.js';
import { buildId as embeddedBuildId } from '../core/build-info.js';
import { ApiError, CliError } from './errors.js';
import { isRunning } from '../firecracker/proc.js';

export interface DaemonInfo {
  version: string;
  buildId: string;
  pid: number;
  startedAt: string;
  [k: string]: unknown;
}

const START_TIMEOUT_MS = 5000;

export class DaemonClient {
  constructor(
    readonly socket: string,
    private readonly timeoutMs = 0,
    /** Sent on every call: a daemon of another build refuses the call before doing anything. */
    readonly buildId?: string,
  ) {}

  /**
   * Calls POST /v1/<method>; resolves the result or throws ApiError. Speaks HTTP/1.1 over a
   * plain socket (node:http costs the CLI ~5 ms to load; the daemon always answers with
   * Content-Length and closes on "Connection: close").
   */
  call<T = unknown>(method: string, body: unknown = {}, opts: { opId?: string } = {}): Promise<T> {
    const text = JSON.stringify(body);
    const head = [
      `POST /v1/${method} HTTP/1.1`,
      'Host: bangerd',
      'Content-Type: application/json',
      `Content-Length: ${Buffer.byteLength(text)}`,
      'Connection: close',
      ...(opts.opId ? [`X-Banger-Op: ${opts.opId}`] : []),
      ...(this.buildId ? [`X-Banger-Build: ${this.buildId}`] : []),
    ].join('\r\n');
    return new Promise((resolve, reject) => {
      const sock = createConnection(this.socket);
      const chunks: Buffer[] = [];
      let timer: NodeJS.Timeout | undefined;
      if (this.timeoutMs) timer = setTimeout(() => sock.destroy(new Error(`no answer from the daemon within ${this.timeoutMs} ms`)), this.timeoutMs);
      sock.on('connect', () => sock.write(`${head}\r\n\r\n${text}`));
      sock.on('data', (c: Buffer) => chunks.push(c));
      sock.on('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
      sock.on('close', () => {
        clearTimeout(timer);
        const raw = Buffer.concat(chunks);
        const split = raw.indexOf('\r\n\r\n');
        if (split < 0) {
          reject(new CliError('the daemon closed the connection without an answer; see its log'));
          return;
        }
        const status = Number.parseInt(raw.subarray(0, split).toString('latin1').split(' ')[1] ?? '', 10);
        let parsed: { result?: T; error?: { code: string; message: string; details: unknown } };
        try {
          parsed = JSON.parse(raw.subarray(split + 4).toString('utf8'));
        } catch {
          reject(new CliError(`the daemon answered ${status} with a body that is not JSON; see its log`));
          return;
        }
        if (status === 200 && parsed && 'result' in parsed) resolve(parsed.result as T);
        else if (parsed?.error) reject(new ApiError(parsed.error.code, parsed.error.message, status, parsed.error.details));
        else reject(new CliError(`the daemon answered ${status} without a result`));
      });
    });
  }

  /** Opens GET /v1/events; calls onEvent for each NDJSON line until close() is called. */
  async events(onEvent: (e: Record<string, unknown>) => void): Promise<{ close: () => void }> {
    const { request } = await import('node:http');
    return new Promise((resolve, reject) => {
      const req = request({ socketPath: this.socket, path: '/v1/events', method: 'GET' }, (res) => {
        let buf = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => {
          buf += d;
          let i: number;
          while ((i = buf.indexOf('\n')) >= 0) {
            const line = buf.slice(0, i);
            buf = buf.slice(i + 1);
            if (!line.trim()) continue;
            try {
              onEvent(JSON.parse(line));
            } catch {
              // a line we cannot read is skipped
            }
          }
        });
        res.on('error', () => {});
        resolve({ close: () => req.destroy() });
      });
      req.on('error', reject);
      req.end();
    });
  }
}

export function isNoDaemon(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException)?.code;
  return code === 'ENOENT' || code === 'ECONNREFUSED';
}

export async function tryInfo(client: DaemonClient): Promise<DaemonInfo | null> {
  try {
    return await client.call<DaemonInfo>('daemon.info');
  } catch (err) {
    if (isNoDaemon(err)) return null;
    throw err;
  }
}

function tailOfFile(path: string, lines: number): string {
  try {
    const size = statSync(path).size;
    const text = readFileSync(path, 'utf8').slice(Math.max(0, size - 16384));
    return text.trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Starts bangerd detached, logging to the SPEC log, and waits up to 5 s for it to answer. */
export async function startDaemonProcess(config: LoadedConfig, client: DaemonClient): Promise<DaemonInfo> {
  const daemonJs = fileURLToPath(new URL('./bangerd.js', import.meta.url));
  if (!existsSync(daemonJs)) throw new CliError(`cannot find the daemon at ${daemonJs}; run npm run build`);
  const log = config.paths.daemonLog;
  mkdirSync(dirname(log), { recursive: true, mode: 0o700 });
  const fd = openSync(log, 'a', 0o600);
  let exited: { code: number | null; at: number } | null = null;
  try {
    const { spawn } = await import('node:child_process');
    const child = spawn(process.execPath, [daemonJs], { detached: true, stdio: ['ignore', fd, fd], env: process.env });
    child.on('exit', (code) => (exited = { code, at: Date.now() }));
    child.unref();
  } finally {
    closeSync(fd);
  }
  const deadline = Date.now() + START_TIMEOUT_MS;
  while (Date.now() < deadline) {
    const info = await tryInfo(client).catch(() => null);
    if (info) return info;
    // A daemon that lost a start race exits at once while the winner comes up: keep asking briefly.
    if (exited && Date.now() - (exited as { at: number }).at > 1000) break;
    await sleep(25);
  }
  const why = exited ? `it exited with code ${(exited as { code: number | null }).code}` : `it did not answer within ${START_TIMEOUT_MS / 1000} s`;
  throw new CliError(`could not start bangerd (${why}); last lines of ${log}:\n${tailOfFile(log, 15)}`);
}

export function cliBuildId(config: LoadedConfig): string {
  return process.env.BANGER_BUILD_ID || config.settings.buildId || embeddedBuildId({});
}

/** Waits until a process has exited. */
export async function waitForPidGone(pid: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (!isRunning(pid)) return true;
    await sleep(20);
  }
  return false;
}

/** Waits until nothing answers on the socket. */
export async function waitForDaemonGone(client: DaemonClient, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if ((await tryInfo(client).catch(() => null)) === null) return true;
    await sleep(25);
  }
  return false;
}

export const STALE_DAEMON = 'stale_daemon';

/** True when the daemon refused a call because it is of another build. */
export function isStaleDaemon(err: unknown): boolean {
  return err instanceof ApiError && (err.details as { reason?: string } | null)?.reason === STALE_DAEMON;
}

/** Asks the daemon to shut down and waits until it is gone. */
export async function replaceDaemon(config: LoadedConfig, client: DaemonClient, onNotice?: (msg: string) => void): Promise<DaemonInfo> {
  const info = await tryInfo(client);
  if (info) {
    onNotice?.(`replacing bangerd ${info.buildId} (pid ${info.pid}) with build ${cliBuildId(config)}`);
    await client.call('daemon.shutdown').catch(() => undefined);
    if (!(await waitForDaemonGone(client, 10_000)) || !(await waitForPidGone(info.pid, 5000))) {
      throw new CliError(`the old bangerd (pid ${info.pid}) did not shut down within 10 s; stop it with kill ${info.pid}`);
    }
  }
  return startDaemonProcess(config, client);
}

/**
 * Returns a client to a daemon of this CLI's build: starts one when none answers, and replaces
 * one whose buildId differs (running VMs survive: the daemon never stops them on shutdown).
 */
export async function connectDaemon(config: LoadedConfig, opts: { autostart: boolean; onNotice?: (msg: string) => void }): Promise<{ client: DaemonClient; info: DaemonInfo | null }> {
  const client = new DaemonClient(config.settings.socket);
  let info = await tryInfo(client);
  if (!opts.autostart) return { client, info };
  const mine = cliBuildId(config);
  if (info && info.buildId !== mine) {
    opts.onNotice?.(`replacing bangerd ${info.buildId} (pid ${info.pid}) with build ${mine}`);
    await client.call('daemon.shutdown').catch(() => undefined);
    if (!(await waitForDaemonGone(client, 10_000)) || !(await waitForPidGone(info.pid, 5000))) {
      throw new CliError(`the old bangerd (pid ${info.pid}) did not shut down within 10 s; stop it with kill ${info.pid}`);
    }
    info = null;
  }
  if (!info) info = await startDaemonProcess(config, client);
  return { client, info };
}
