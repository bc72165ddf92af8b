// Starting and killing Firecracker processes. The pid banger records is Firecracker's own, never
// a wrapper's, and is always checked against its start time and --id before it is signalled.
import { chmodSync, existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { FailedPreconditionError, InternalError, errorMessage } from '../core/errors.js';
import type { Runner, SpawnedProcess } from '../core/ports.js';
import { FirecrackerClient } from './api.js';
import { tailLines } from './console.js';
import { PIDFILE_WRAPPER_SCRIPT, isSameProcess, readCmdline, readStartTime, hasIdArg } from './proc.js';

const DEFAULT_API_TIMEOUT_MS = 5_000;
const POLL_MS = 25;
const KILL_WAIT_MS = 5_000;
const CONSOLE_LINES_IN_ERRORS = 10;

export interface LaunchOptions {
  runner: Runner;
  /** The Firecracker binary, a name found through PATH or a path. */
  binary: string;
  apiSock: string;
  vmId: string;
  /** The VM's directory: firecracker.pid and console.log go there. */
  vmDir: string;
  /** Run Firecracker through `sudo -n` (the daemon is not root). */
  useSudo: boolean;
  /** Owner given to the API socket when Firecracker runs as root through sudo. */
  uid: number;
  gid: number;
  /** Bound on the whole launch, spawn to the API answering; default 5 s. */
  apiTimeoutMs?: number;
}

export interface LaunchedFirecracker {
  pid: number;
  /** Field 22 of /proc/<pid>/stat, recorded with the pid to tell a reused pid apart. */
  startTime: string;
  /** Resolves with the exit status of what was spawned (Firecracker itself after the exec, or sudo, which relays it). */
  exited?: Promise<{ code: number | null; signal: string | null }>;
}

export function pidFilePath(vmDir: string): string {
  return join(vmDir, 'firecracker.pid');
}

export function consoleLogPath(vmDir: string): string {
  return join(vmDir, 'console.log');
}

/**
 * The spawn argv: `[sudo -n] sh -c <script> <pidfile> <binary> --api-sock <sock> --id <id>`.
 * Values travel as arguments ($0 and "$@"), never inside the script text.
 */
export function buildLaunchArgv(opts: Pick<LaunchOptions, 'binary' | 'apiSock' | 'vmId' | 'vmDir' | 'useSudo'>): string[] {
  return [
    ...(opts.useSudo ? ['sudo', '-n'] : []),
    'sh',
    '-c',
    PIDFILE_WRAPPER_SCRIPT,
    pidFilePath(opts.vmDir),
    opts.binary,
    '--api-sock',
    opts.apiSock,
    '--id',
    opts.vmId,
  ];
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Removes a file that may belong to root (made by Firecracker under sudo). Gone already is fine. */
async function removeFile(runner: Runner, path: string, useSudo: boolean): Promise<void> {
  try {
    rmSync(path, { force: true });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (useSudo && (code === 'EACCES' || code === 'EPERM')) {
      await runner.run(['sudo', '-n', 'rm', '-f', '--', path]);
      return;
    }
    throw err;
  }
}

function readPidFile(path: string): number | null {
  try {
    const text = readFileSync(path, 'utf8').trim();
    return /^\d+$/.test(text) ? Number(text) : null;
  } catch {
    return null;
  }
}

function consoleTail(vmDir: string): string {
  const lines = tailLines(consoleLogPath(vmDir), CONSOLE_LINES_IN_ERRORS);
  return lines.length > 0 ? `; console: ${lines.join(' | ')}` : '; console is empty';
}

/**
 * Starts Firecracker detached, its output appended to <vmDir>/console.log, and waits (bounded by
 * apiTimeoutMs) until its API answers. On any failure after the spawn, what was started is killed
 * and the socket removed before the error is thrown.
 */
export async function launchFirecracker(opts: LaunchOptions): Promise<LaunchedFirecracker> {
  const timeoutMs = opts.apiTimeoutMs ?? DEFAULT_API_TIMEOUT_MS;
  const pidFile = pidFilePath(opts.vmDir);
  // A socket left by a dead Firecracker makes a new one fail to bind; a pid file, lie.
  await removeFile(opts.runner, opts.apiSock, opts.useSudo);
  await removeFile(opts.runner, pidFile, opts.useSudo);

  const deadline = Date.now() + timeoutMs;
  const child = opts.runner.spawn(buildLaunchArgv(opts), { outputFile: consoleLogPath(opts.vmDir) });
  const spawned: { exit: { code: number | null; signal: string | null } | null } = { exit: null };
  void child.exited.then((e) => (spawned.exit = e));
  let real: LaunchedFirecracker | null = null;

  const exitedEarly = async (stage: string) => {
    // /proc can show the death before the exit status arrives (and sudo exits just after its child).
    await Promise.race([child.exited, sleep(500)]);
    const e = spawned.exit;
    const how = e === null ? 'exited' : e.signal ? `was killed by ${e.signal}` : `exited with code ${e.code}`;
    return new FailedPreconditionError(`firecracker ${how} ${stage}${consoleTail(opts.vmDir)}`);
  };
  const timedOut = (stage: string) =>
    new InternalError(`firecracker did not ${stage} within ${timeoutMs} ms${consoleTail(opts.vmDir)}`);

  try {
    // 1. The wrapper writes its pid, then execs: wait until that pid runs Firecracker itself.
    for (;;) {
      const pid = readPidFile(pidFile);
      if (pid !== null) {
        const argv = readCmdline(pid);
        const startTime = readStartTime(pid);
        if (argv && startTime && hasIdArg(argv, opts.vmId) && !argv.includes(PIDFILE_WRAPPER_SCRIPT)) {
          real = { pid, startTime };
          break;
        }
      }
      if (spawned.exit) throw await exitedEarly('before it wrote its pid file');
      if (Date.now() >= deadline) throw timedOut(`write its pid file ${pidFile}`);
      await sleep(POLL_MS);
    }

    // 2. The socket appears; under sudo it is root's until handed to the daemon's user. Then 0600 (SPEC 2).
    let owned = false;
    for (;;) {
      if (!isSameProcess(real.pid, real.startTime, opts.vmId) || spawned.exit) throw await exitedEarly('before its API answered');
      if (existsSync(opts.apiSock)) {
        if (!owned) {
          if (opts.useSudo) await opts.runner.run(['sudo', '-n', 'chown', `${opts.uid}:${opts.gid}`, opts.apiSock]);
          chmodSync(opts.apiSock, 0o600);
          owned = true;
        }
        // 3. GET / answers.
        try {
          await new FirecrackerClient(opts.apiSock, { timeoutMs: Math.max(50, Math.min(1_000, deadline - Date.now())) }).getInstanceInfo();
          return { ...real, exited: child.exited };
        } catch {
          // Not listening yet (ECONNREFUSED between bind and listen), or slow: retry until the deadline.
        }
      }
      if (Date.now() >= deadline) throw timedOut(`answer on its API socket ${opts.apiSock}`);
      await sleep(POLL_MS);
    }
  } catch (err) {
    try {
      await abortLaunch(opts, child, real);
    } catch (cleanupErr) {
      throw new InternalError(`${errorMessage(err)}; and cleaning up failed: ${errorMessage(cleanupErr)}`, { cause: err });
    }
    throw err;
  }
}

/** Kills everything a failed launch started (Firecracker, and the wrapper's process group), then removes its files. */
async function abortLaunch(opts: LaunchOptions, child: SpawnedProcess, real: LaunchedFirecracker | null): Promise<void> {
  const errors: string[] = [];
  if (real) {
    try {
      await killFirecracker({ runner: opts.runner, pid: real.pid, startTime: real.startTime, vmId: opts.vmId, useSudo: opts.useSudo });
    } catch (err) {
      errors.push(errorMessage(err));
    }
  }
  // The spawn made its own session, so the wrapper's process group id is its pid.
  try {
    if (opts.useSudo) await opts.runner.run(['sudo', '-n', 'kill', '-9', '--', `-${child.pid}`], { check: false });
    else process.kill(-child.pid, 'SIGKILL');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ESRCH') errors.push(errorMessage(err));
  }
  const gone = await Promise.race([child.exited.then(() => true), sleep(KILL_WAIT_MS).then(() => false)]);
  if (!gone) errors.push(`process ${child.pid} still running ${KILL_WAIT_MS} ms after SIGKILL`);
  for (const path of [opts.apiSock, pidFilePath(opts.vmDir)]) {
    try {
      await removeFile(opts.runner, path, opts.useSudo);
    } catch (err) {
      errors.push(errorMessage(err));
    }
  }
  if (errors.length > 0) throw new InternalError(errors.join('; '));
}

export interface KillOptions {
  runner: Runner;
  pid: number;
  startTime: string;
  vmId: string;
  useSudo: boolean;
  /** How long to wait for the process to be gone; default 5 s. */
  timeoutMs?: number;
}

/**
 * SIGKILLs the recorded Firecracker, but only while pid is still that process (same start time,
 * --id vmId): a pid reused by something else is left alone. Resolves once it is gone.
 */
export async function killFirecracker(opts: KillOptions): Promise<void> {
  if (!isSameProcess(opts.pid, opts.startTime, opts.vmId)) return;
  if (opts.useSudo) {
    const res = await opts.runner.run(['sudo', '-n', 'kill', '-9', String(opts.pid)], { check: false });
    if (res.exitCode !== 0 && isSameProcess(opts.pid, opts.startTime, opts.vmId)) {
      throw new InternalError(`sudo -n kill -9 ${opts.pid} exited ${res.exitCode}: ${res.stderr.trim()}`);
    }
  } else {
    try {
      process.kill(opts.pid, 'SIGKILL');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
    }
  }
  const timeoutMs = opts.timeoutMs ?? KILL_WAIT_MS;
  if (!(await waitForExit(opts.pid, opts.startTime, opts.vmId, timeoutMs))) {
    throw new InternalError(`firecracker pid ${opts.pid} (vm ${opts.vmId}) still running ${timeoutMs} ms after SIGKILL`);
  }
}

/** Polls /proc every 100 ms until the process is gone; true when it went within timeoutMs. */
export async function waitForExit(pid: number, startTime: string, vmId: string, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (!isSameProcess(pid, startTime, vmId)) return true;
    const left = deadline - Date.now();
    if (left <= 0) return false;
    await sleep(Math.min(100, left));
  }
}
