// A throwaway banger installation for one test file: temporary XDG directories, the built CLI
// and daemon run as real processes, and a cleanup that stops every daemon it started.
import { spawn, spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { mkdtempSync, rmSync, mkdirSync, writeFileSync, copyFileSync, existsSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { isRunning } from '../../src/firecracker/proc.js';

function findRoot(): string {
  let dir = import.meta.dirname;
  for (let i = 0; i < 5; i++) {
    if (existsSync(join(dir, 'package.json')) && existsSync(join(dir, 'bin/banger'))) return dir;
    dir = resolve(dir, '..');
  }
  throw new Error(`cannot find the banger checkout above ${import.meta.dirname}`);
}
export const ROOT = findRoot();
export const BANGER = join(ROOT, 'bin/banger');
export const BANGERD = join(ROOT, 'bin/bangerd');
export const STANDIN_DIR = join(ROOT, 'test/fc-standin');

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

export class BangerEnv {
  readonly dir: string;
  readonly env: Record<string, string>;

  constructor(extraEnv: Record<string, string> = {}) {
    // Short path: the socket must stay under 108 bytes.
    this.dir = mkdtempSync(join('/tmp', 'bg-'));
    this.env = {
      PATH: `${STANDIN_DIR}:${process.env.PATH}`,
      HOME: join(this.dir, 'home'),
      XDG_STATE_HOME: join(this.dir, 'state'),
      XDG_DATA_HOME: join(this.dir, 'data'),
      XDG_CONFIG_HOME: join(this.dir, 'config'),
      XDG_RUNTIME_DIR: join(this.dir, 'run'),
      BANGER_ROOTFS_STRATEGY: 'copy',
      ...extraEnv,
    };
    mkdirSync(this.env.HOME, { recursive: true });
    mkdirSync(this.env.XDG_RUNTIME_DIR, { recursive: true, mode: 0o700 });
  }

  get socket(): string {
    return this.env.BANGER_SOCKET ?? join(this.env.XDG_RUNTIME_DIR, 'banger', 'bangerd.sock');
  }
  get stateDir(): string {
    return join(this.env.XDG_STATE_HOME, 'banger');
  }
  get dataDir(): string {
    return join(this.env.XDG_DATA_HOME, 'banger');
  }
  get database(): string {
    return join(this.stateDir, 'banger.db');
  }
  get log(): string {
    return join(this.stateDir, 'bangerd.log');
  }

  /** Runs the built CLI synchronously. */
  cli(args: string[], opts: { env?: Record<string, string>; input?: string; timeoutMs?: number; prefix?: string[]; raw?: boolean } = {}): RunResult {
    // raw: the prefix is the whole command (for wrappers such as script(1) that take a command string)
    const argv = opts.raw ? (opts.prefix ?? []) : [...(opts.prefix ?? []), process.execPath, BANGER, ...args];
    const r: SpawnSyncReturns<string> = spawnSync(argv[0], argv.slice(1), {
      env: { ...this.env, ...opts.env },
      input: opts.input ?? '',
      encoding: 'utf8',
      timeout: opts.timeoutMs ?? 60_000,
    });
    if (r.error) throw r.error;
    return { code: r.status ?? 128, stdout: r.stdout, stderr: r.stderr };
  }

  /** Runs the CLI asynchronously (for parallel calls). */
  cliAsync(args: string[], opts: { env?: Record<string, string>; prefix?: string[] } = {}): Promise<RunResult> {
    return new Promise((resolvePromise, reject) => {
      const argv = [...(opts.prefix ?? []), process.execPath, BANGER, ...args];
      const child = spawn(argv[0], argv.slice(1), { env: { ...this.env, ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d) => (stdout += d));
      child.stderr.on('data', (d) => (stderr += d));
      child.on('error', reject);
      child.on('close', (code) => resolvePromise({ code: code ?? 128, stdout, stderr }));
    });
  }

  json<T = unknown>(args: string[], opts: { env?: Record<string, string>; prefix?: string[] } = {}): T {
    const r = this.cli([...args, '--json'], opts);
    if (r.code !== 0) throw new Error(`banger ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
    return JSON.parse(r.stdout) as T;
  }

  daemonPid(): number | null {
    try {
      return Number.parseInt(readFileSync(`${this.socket}.lock`, 'utf8'), 10);
    } catch {
      return null;
    }
  }

  /** Stops the daemon (SIGTERM, then SIGKILL) and removes the temporary tree. */
  async cleanup(opts: { keep?: boolean } = {}): Promise<void> {
    const pid = this.daemonPid();
    if (pid) {
      try {
        process.kill(pid, 'SIGTERM');
      } catch {
        // gone
      }
      for (let i = 0; i < 50 && isAlive(pid); i++) await new Promise((r) => setTimeout(r, 50));
      if (isAlive(pid)) process.kill(pid, 'SIGKILL');
    }
    killStandins(this.dir);
    if (!opts.keep) rmSync(this.dir, { recursive: true, force: true });
  }
}

/** True while pid runs; a zombie (exited, not yet reaped) counts as gone. */
export const isAlive = (pid: number): boolean => isRunning(pid);

/** Kills every process whose command line mentions dir (stand-ins started for this env). */
export function killStandins(dir: string): void {
  const r = spawnSync('pgrep', ['-f', dir], { encoding: 'utf8' });
  for (const line of (r.stdout ?? '').split('\n')) {
    const pid = Number.parseInt(line, 10);
    if (pid && pid !== process.pid) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone
      }
    }
  }
}

/** A kernel stand-in: a real ELF file. And a small real ext4 rootfs made by mkfs.ext4. */
export function makeImageFiles(dir: string, sizeMiB = 16): { kernel: string; rootfs: string; initrd: string } {
  mkdirSync(dir, { recursive: true });
  const kernel = join(dir, 'vmlinux');
  copyFileSync('/bin/true', kernel);
  const tree = join(dir, 'tree');
  mkdirSync(join(tree, 'etc/systemd/system/multi-user.target.wants'), { recursive: true });
  mkdirSync(join(tree, 'lib/systemd/system'), { recursive: true });
  mkdirSync(join(tree, 'root'), { recursive: true });
  writeFileSync(join(tree, 'etc/hostname'), 'localhost\n');
  writeFileSync(join(tree, 'lib/systemd/system/ssh.service'), '[Unit]\nDescription=OpenBSD Secure Shell server\n[Service]\nExecStart=/usr/sbin/sshd -D\n[Install]\nWantedBy=multi-user.target\n');
  const rootfs = join(dir, 'rootfs.ext4');
  const r = spawnSync('mkfs.ext4', ['-q', '-F', '-d', tree, rootfs, `${sizeMiB}M`], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`mkfs.ext4 failed: ${r.stderr}`);
  const initrd = join(dir, 'initrd.img');
  writeFileSync(initrd, 'not really an initrd\n');
  return { kernel, rootfs, initrd };
}

export function tmp(prefix = 'bgt-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

export { existsSync };
