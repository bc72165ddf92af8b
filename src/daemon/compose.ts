// The composition root: wires the real adapters into a Daemon and serves it.
import { chmodSync, closeSync, existsSync, mkdirSync, openSync, readFileSync, unlinkSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import { connect } from 'node:net';
import pino, { type Logger } from 'pino';
import { loadConfig, type LoadedConfig } from '../core/config.js';
import { buildId as embeddedBuildId } from '../core/build-info.js';
import { FailedPreconditionError } from '../core/errors.js';
import { systemClock, type Runner } from '../core/ports.js';
import { ExecRunner } from '../host/runner.js';
import { SudoRunner } from '../host/sudo-runner.js';
import { openDatabase } from '../store/db.js';
import { Store } from '../store/store.js';
import { Daemon } from './daemon.js';
import { EventBus } from './events.js';
import { createApiServer } from './server.js';
import { isRunning, readCmdline } from '../firecracker/proc.js';
import { customizeRootfsWithScript } from './customize.js';

/** Makes a directory with the given mode, tightening it if it already exists. */
export function ensurePrivateDir(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
}

/** True when pid is a live bangerd (not a zombie, not a pid reused by something else). */
function isLiveDaemon(pid: number): boolean {
  return isRunning(pid) && (readCmdline(pid) ?? []).some((arg) => arg.includes('bangerd'));
}

function socketAnswers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(path);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/**
 * One daemon per socket: an exclusive lock file beside the socket holds the owner's pid.
 * A lock whose pid is dead, or a socket nobody answers on, is stale and taken over.
 */
export async function claimSocket(socket: string): Promise<() => void> {
  const lock = `${socket}.lock`;
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const fd = openSync(lock, 'wx', 0o600);
      writeSync(fd, `${process.pid}\n`);
      closeSync(fd);
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const owner = Number.parseInt(readFileSync(lock, 'utf8').trim(), 10);
      if (Number.isInteger(owner) && owner !== process.pid && isLiveDaemon(owner)) {
        throw new FailedPreconditionError(
          `another bangerd (pid ${owner}) already serves ${socket}; stop it with "banger daemon stop" or use another BANGER_SOCKET`,
        );
      }
      unlinkSync(lock);
    }
  }
  if (existsSync(socket)) {
    if (await socketAnswers(socket)) {
      unlinkSync(lock);
      throw new FailedPreconditionError(`a daemon already answers on ${socket}; stop it with "banger daemon stop" first`);
    }
    unlinkSync(socket);
  }
  return () => {
    for (const f of [socket, lock]) {
      try {
        const owner = f === lock ? Number.parseInt(readFileSync(lock, 'utf8'), 10) : process.pid;
        if (owner === process.pid) unlinkSync(f);
      } catch {
        // already gone
      }
    }
  };
}

export interface RunningDaemon {
  daemon: Daemon;
  stop: () => Promise<void>;
  done: Promise<void>;
}

export async function startDaemon(opts: { env?: NodeJS.ProcessEnv; runner?: Runner; log?: Logger; config?: LoadedConfig } = {}): Promise<RunningDaemon> {
  const env = opts.env ?? process.env;
  const { paths, settings } = opts.config ?? loadConfig(env);
  ensurePrivateDir(dirname(settings.socket));
  ensurePrivateDir(paths.stateDir);
  ensurePrivateDir(paths.vmsDir);
  ensurePrivateDir(paths.dataDir);
  ensurePrivateDir(paths.vmSocketsDir);
  const log =
    opts.log ??
    pino({ base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime }, pino.destination({ dest: paths.daemonLog, sync: true, mkdir: true }));

  const release = await claimSocket(settings.socket);
  let store: Store;
  try {
    store = new Store(openDatabase(paths.database));
  } catch (err) {
    release();
    throw err;
  }
  // Not root: the privileged tools go through passwordless sudo (docs/sudoers.md).
  const runner = opts.runner ?? (process.getuid?.() === 0 ? new ExecRunner() : new SudoRunner(new ExecRunner()));
  const events = new EventBus();
  let resolveDone!: () => void;
  const done = new Promise<void>((r) => (resolveDone = r));
  let stopping: Promise<void> | null = null;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      log.info('shutting down');
      daemon.runtime.close();
      await new Promise<void>((r) => {
        server.close(() => r());
        server.closeAllConnections();
      });
      store.db.close();
      release();
      log.info('stopped');
      resolveDone();
    })();
    return stopping;
  };
  const buildId = settings.buildId ?? embeddedBuildId(env);
  const daemon = new Daemon({
    store,
    events,
    log,
    paths,
    settings,
    runner,
    clock: systemClock,
    buildId,
    requestShutdown: () => void stop(),
    customizeRootfs: (file, progress) => customizeRootfsWithScript({ runner, paths, log }, file, progress),
  });
  const server = createApiServer(daemon, log);
  const oldMask = process.umask(0o177);
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(settings.socket, () => resolve());
    });
  } catch (err) {
    process.umask(oldMask);
    store.db.close();
    release();
    throw err;
  }
  process.umask(oldMask);
  chmodSync(settings.socket, 0o600);
  log.info({ socket: settings.socket, buildId }, 'listening');
  await daemon.runtime.recover();
  return { daemon, stop, done };
}
