// The unprivileged mode, for real: a throwaway system user with passwordless sudo for exactly
// banger's tools runs the daemon and the CLI inside a throwaway network namespace; Firecracker
// (the stand-in) runs as root through sudo. The user and the sudoers file are removed afterwards.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { accessSync, chmodSync, constants, cpSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { BangerEnv, ROOT, isAlive, makeImageFiles } from '../helpers/banger-env.js';
import { HostNetns, privilegedSkipReason } from '../helpers/netns.js';
import { PRIVILEGED_TOOLS } from '../../src/host/sudo-runner.js';
import { PIDFILE_WRAPPER_SCRIPT, readCmdline } from '../../src/firecracker/proc.js';

/** The first executable named `name` on PATH (what sudo will resolve too), or null. */
function findOnPath(name: string): string | null {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (!dir) continue;
    const p = join(dir, name);
    try {
      accessSync(p, constants.X_OK);
      if (statSync(p).isFile()) return p;
    } catch {
      // not here
    }
  }
  return null;
}

const HOST_TOOLS = ['sudo', 'visudo', 'useradd', 'userdel', 'setpriv', 'sh', ...PRIVILEGED_TOOLS];

function skipReason(): string | null {
  const base = privilegedSkipReason();
  if (base) return base;
  const missing = HOST_TOOLS.filter((t) => findOnPath(t) === null);
  if (missing.includes('sudo')) return 'sudo is not installed (apt-get install -y sudo)';
  if (missing.length > 0) return `missing host tools: ${missing.join(', ')}`;
  return null;
}

const skip = skipReason();
if (skip) console.warn(`skipping unprivileged-mode tests: ${skip}`);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function sh(argv: string[], opts: { allowFail?: boolean } = {}): string {
  const r = spawnSync(argv[0], argv.slice(1), { encoding: 'utf8' });
  if (r.status !== 0 && !opts.allowFail) throw new Error(`${argv.join(' ')} exited ${r.status}: ${r.stderr}`);
  return r.stdout ?? '';
}

/** Fields of /proc/<pid>/status, e.g. {Uid: "0\t0\t0\t0", PPid: "123"}; null when gone. */
function procStatus(pid: number): Record<string, string> | null {
  try {
    const out: Record<string, string> = {};
    for (const line of readFileSync(`/proc/${pid}/status`, 'utf8').split('\n')) {
      const i = line.indexOf(':');
      if (i > 0) out[line.slice(0, i)] = line.slice(i + 1).trim();
    }
    return out;
  } catch {
    return null;
  }
}

/** Real uid of a process. */
function procUid(pid: number): number | null {
  const s = procStatus(pid);
  return s ? Number(s.Uid.split(/\s+/)[0]) : null;
}

/** The processes above pid, nearest first, as [pid, argv] up to (not including) pid 1. */
function ancestors(pid: number): { pid: number; argv: string[] }[] {
  const out: { pid: number; argv: string[] }[] = [];
  let p = Number(procStatus(pid)?.PPid ?? 0);
  while (p > 1 && out.length < 10) {
    out.push({ pid: p, argv: readCmdline(p) ?? [] });
    p = Number(procStatus(p)?.PPid ?? 0);
  }
  return out;
}

/** Pids of every live process whose real uid is uid. */
function processesOf(uid: number): number[] {
  return readdirSync('/proc')
    .filter((n) => /^\d+$/.test(n))
    .map(Number)
    .filter((pid) => procUid(pid) === uid && isAlive(pid));
}

describe.skipIf(skip !== null)('the unprivileged mode: the daemon as an ordinary user, Firecracker through sudo', () => {
  const tag = randomBytes(3).toString('hex');
  const user = `banger-t${tag}`;
  const sudoersFile = `/etc/sudoers.d/banger-test-${tag}`;
  /** Undo steps of beforeAll, run in reverse by afterAll (also when beforeAll failed half way). */
  const cleanups: { name: string; run: () => void | Promise<void> }[] = [];
  let uid = -1;
  let gid = -1;
  let ns: HostNetns;
  let env: BangerEnv;
  /** Root-owned directory: the second stand-in wrapper, its request record and sudo's log. */
  let rootDir: string;
  /** Where the user runs banger from: the checkout, or a copy when the user cannot read it. */
  let app = ROOT;
  /** Stand-in wrappers with a behaviour switch set. */
  const wrappers = { ignoring: '', crashing: '', socketless: '' };
  let record: string;
  let sudoLog: string;

  const asUser = (args: string[], extra: Record<string, string> = {}) => {
    const argv = [...ns.prefix, 'setpriv', `--reuid=${uid}`, `--regid=${gid}`, '--clear-groups', process.execPath, join(app, 'bin/banger'), ...args];
    const r = spawnSync(argv[0], argv.slice(1), { env: { ...env.env, ...extra }, encoding: 'utf8', timeout: 60_000, cwd: env.dir });
    if (r.error) throw r.error;
    return { code: r.status ?? 128, stdout: r.stdout, stderr: r.stderr };
  };
  const json = <T = any>(args: string[], extra: Record<string, string> = {}): T => {
    const r = asUser([...args, '--json'], extra);
    if (r.code !== 0) throw new Error(`banger ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
    return JSON.parse(r.stdout) as T;
  };
  /** Restarts the daemon (as the user) with another Firecracker binary. */
  const daemonWith = (firecracker: string) => {
    expect(asUser(['daemon', 'stop']).code).toBe(0);
    const r = asUser(['daemon', 'start'], { BANGER_FIRECRACKER: firecracker });
    expect(r.code, r.stderr).toBe(0);
  };
  const apiSocket = (vmId: string) => join(env.env.XDG_RUNTIME_DIR, 'banger', 'vms', `${vmId}.sock`);
  /** Commands the user ran through sudo, from sudo's own log ("... ; COMMAND=/usr/bin/kill -9 42"). */
  const sudoCommands = () =>
    existsSync(sudoLog)
      ? readFileSync(sudoLog, 'utf8')
          .split('\n')
          .filter((l) => l.includes(`: ${user} :`))
          .map((l) => l.slice(l.indexOf('COMMAND=') + 'COMMAND='.length))
      : [];
  const requests = () =>
    existsSync(record)
      ? readFileSync(record, 'utf8')
          .split('\n')
          .filter(Boolean)
          .map((l) => JSON.parse(l))
      : [];
  const hostHoldsNothingOf = (vm: any) => {
    expect(ns.exec(['pgrep', '-f', `--id ${vm.id}`], { allowFail: true }).trim()).toBe('');
    expect(existsSync(apiSocket(vm.id))).toBe(false);
    expect(existsSync(join(env.stateDir, 'vms', vm.id, 'firecracker.pid'))).toBe(false);
    expect(ns.links()).not.toContain(vm.tap);
    expect(ns.rules().filter((r) => r.includes(`banger:${vm.id}`))).toEqual([]);
  };

  beforeAll(async () => {
    try {
      sh(['useradd', '--system', '--no-create-home', '--shell', '/usr/sbin/nologin', user]);
      cleanups.push({
        name: `userdel ${user}`,
        run: async () => {
          // Whatever still runs as the user (nothing should) is killed by pid, or userdel refuses.
          for (const pid of processesOf(uid)) process.kill(pid, 'SIGKILL');
          for (let i = 0; i < 40 && processesOf(uid).length > 0; i++) await sleep(50);
          sh(['userdel', user]);
        },
      });
      uid = Number(sh(['id', '-u', user]).trim());
      gid = Number(sh(['id', '-g', user]).trim());

      rootDir = mkdtempSync('/tmp/bgr-');
      cleanups.push({ name: `rm ${rootDir}`, run: () => rmSync(rootDir, { recursive: true, force: true }) });
      chmodSync(rootDir, 0o755);
      record = join(rootDir, 'requests.ndjson');
      sudoLog = join(rootDir, 'sudo.log');

      // The user needs to read and run the built package; a copy is made when the checkout is closed to it.
      const canRead = spawnSync('setpriv', [`--reuid=${uid}`, `--regid=${gid}`, '--clear-groups', process.execPath, '-e',
        `for (const f of ['dist/banger.cjs', 'dist/bangerd.js', 'dist/fc-standin.js', 'bin/banger']) require('fs').readFileSync(${JSON.stringify(ROOT)} + '/' + f); require(${JSON.stringify(ROOT)} + '/node_modules/better-sqlite3'); require(${JSON.stringify(ROOT)} + '/node_modules/pino');`,
      ]);
      if (canRead.status !== 0) {
        app = join(rootDir, 'app');
        for (const p of ['dist', 'bin', 'scripts', 'package.json', 'node_modules', 'test/fc-standin/firecracker']) cpSync(join(ROOT, p), join(app, p), { recursive: true });
        sh(['chmod', '-R', 'a+rX', app]);
        console.warn(`${ROOT} is not readable by ${user}; running a copy in ${app}`);
      }
      const standin = join(app, 'test/fc-standin/firecracker');

      // sudo resets the environment, so each stand-in switch travels in a wrapper of its own.
      const switches: Record<keyof typeof wrappers, string> = {
        ignoring: 'FC_STANDIN_CTRLALTDEL=ignore',
        crashing: 'FC_STANDIN_CRASH_AFTER_MS=300',
        socketless: 'FC_STANDIN_NO_SOCKET=1',
      };
      for (const [name, assignment] of Object.entries(switches) as [keyof typeof wrappers, string][]) {
        wrappers[name] = join(rootDir, `firecracker-${name}`);
        const vars = `${assignment} FC_STANDIN_RECORD=${record}`;
        const names = vars.split(' ').map((v) => v.split('=')[0]).join(' ');
        writeFileSync(wrappers[name], `#!/bin/sh\n${vars}\nexport ${names}\nexec ${standin} "$@"\n`, { mode: 0o755 });
      }

      // Exactly the tools banger runs through sudo, plus sh (the pid-file wrapper) and the two stand-ins.
      const commands = [...PRIVILEGED_TOOLS, 'sh'].map((t) => findOnPath(t)!);
      const sudoers =
        `# banger unprivileged-mode test (${user}); removed when the test ends\n` +
        `Defaults:${user} logfile=${sudoLog}, loglinelen=0, !syslog\n` +
        `${user} ALL=(root) NOPASSWD: ${[...commands, standin, ...Object.values(wrappers)].join(', ')}\n`;
      const draft = join(rootDir, 'sudoers');
      writeFileSync(draft, sudoers, { mode: 0o440 });
      sh(['visudo', '-cf', draft]);
      cleanups.push({ name: `rm ${sudoersFile}`, run: () => rmSync(sudoersFile, { force: true }) });
      writeFileSync(sudoersFile, sudoers, { mode: 0o440 });
      sh(['visudo', '-c']);

      ns = new HostNetns();
      cleanups.push({ name: `ip netns delete ${ns.name}`, run: () => ns.destroy() });
      env = new BangerEnv({ BANGER_BUILD_ID: 'unprivileged-test', BANGER_FIRECRACKER: standin });
      cleanups.push({ name: `rm ${env.dir}`, run: () => env.cleanup() });
      const files = makeImageFiles(join(env.dir, 'src'), 16);
      sh(['chown', '-R', `${uid}:${gid}`, env.dir]);

      const added = asUser(['image', 'add', 'base', '--kernel', files.kernel, '--rootfs', files.rootfs, '--initrd', files.initrd]);
      expect(added.code, added.stderr).toBe(0);
    } catch (err) {
      await runCleanups();
      throw err;
    }
  });

  async function runCleanups(): Promise<void> {
    const failures: string[] = [];
    for (let c = cleanups.pop(); c; c = cleanups.pop()) {
      try {
        await c.run();
      } catch (err) {
        failures.push(`${c.name}: ${(err as Error).message}`);
      }
    }
    if (failures.length > 0) throw new Error(`cleanup failed: ${failures.join('; ')}`);
  }

  afterAll(async () => {
    await runCleanups();
    expect(existsSync(sudoersFile)).toBe(false);
    expect(spawnSync('id', [user]).status).not.toBe(0);
  });

  it('runs the daemon as the user and Firecracker as root through sudo, recording Firecracker’s own pid', () => {
    const vm = json(['vm', 'create', '--name', 'dev', '--image', 'base']);
    expect(vm.state).toBe('running');

    const daemonPid = env.daemonPid()!;
    expect(procUid(daemonPid)).toBe(uid);

    // The recorded pid is the stand-in itself, running as root: not sudo, not the pid-file wrapper.
    const cmdline = readCmdline(vm.pid)!;
    expect(cmdline.join(' ')).toContain('fc-standin.js');
    expect(cmdline[cmdline.indexOf('--id') + 1]).toBe(vm.id);
    expect(cmdline).not.toContain(PIDFILE_WRAPPER_SCRIPT);
    expect(procStatus(vm.pid)!.Uid.split(/\s+/)).toEqual(['0', '0', '0', '0']);
    // ... started by sudo, which the daemon started.
    const chain = ancestors(vm.pid);
    const viaSudo = chain.findIndex((p) => p.argv[0] === 'sudo');
    expect(viaSudo, JSON.stringify(chain)).toBeGreaterThanOrEqual(0);
    expect(chain[viaSudo].argv.slice(0, 4)).toEqual(['sudo', '-n', 'sh', '-c']);
    expect(chain.slice(viaSudo).map((p) => p.pid)).toContain(daemonPid);
    expect(sudoCommands().some((c) => c.includes(' -c ') && c.endsWith(`--id ${vm.id}`))).toBe(true);

    // The API socket was handed back to the user, private to it.
    const sock = statSync(apiSocket(vm.id));
    expect(sock.isSocket()).toBe(true);
    expect(sock.uid).toBe(uid);
    expect(sock.mode & 0o777).toBe(0o600);
    expect(sudoCommands()).toContain(`${findOnPath('chown')} ${uid}:${gid} ${apiSocket(vm.id)}`);

    // TAP and NAT rules were made through sudo inside the namespace.
    expect(ns.links()).toContain(vm.tap);
    expect(ns.rules().filter((r) => r.includes(`banger:${vm.id}`))).toHaveLength(3);
    expect(sudoCommands().some((c) => c.startsWith(findOnPath('ip')!) && c.includes('tuntap'))).toBe(true);
    expect(asUser(['vm', 'logs', 'dev']).stdout).toMatch(/dev login:/);
  });

  it('stops gracefully: Ctrl-Alt-Del reaches the root Firecracker, and nothing is left', () => {
    const vm = json(['vm', 'show', 'dev']);
    const stopped = json(['vm', 'stop', 'dev']);
    expect(stopped).toMatchObject({ state: 'stopped', pid: null, lastError: null });
    expect(isAlive(vm.pid)).toBe(false);
    // It exited on its own: nobody had to kill it.
    expect(sudoCommands().filter((c) => c.endsWith(`kill -9 ${vm.pid}`))).toEqual([]);
    hostHoldsNothingOf(vm);
  });

  it('stop kills the root Firecracker through sudo when the guest ignores Ctrl-Alt-Del', () => {
    daemonWith(wrappers.ignoring);
    const vm = json(['vm', 'start', 'dev']);
    expect(vm.state).toBe('running');
    expect(procUid(vm.pid)).toBe(0);
    expect(readCmdline(vm.pid)!.join(' ')).toContain('fc-standin.js');

    const t = Date.now();
    const stopped = json(['vm', 'stop', 'dev', '--timeout', '1']);
    expect(Date.now() - t).toBeGreaterThanOrEqual(1000);
    expect(stopped).toMatchObject({ state: 'stopped', pid: null, lastError: null });
    expect(requests().at(-1)).toMatchObject({ method: 'PUT', path: '/actions', body: { action_type: 'SendCtrlAltDel' } });
    expect(sudoCommands()).toContain(`${findOnPath('kill')} -9 ${vm.pid}`);
    expect(isAlive(vm.pid)).toBe(false);
    hostHoldsNothingOf(vm);
  });

  it('a daemon SIGKILLed and started again adopts the root Firecracker with the same pid', async () => {
    daemonWith(env.env.BANGER_FIRECRACKER);
    const vm = json(['vm', 'start', 'dev']);
    const daemonPid = env.daemonPid()!;
    process.kill(daemonPid, 'SIGKILL');
    for (let i = 0; i < 100 && isAlive(daemonPid); i++) await sleep(20);
    const after = json(['vm', 'show', 'dev']);
    expect(env.daemonPid()).not.toBe(daemonPid);
    expect(procUid(env.daemonPid()!)).toBe(uid);
    expect(after).toMatchObject({ state: 'running', pid: vm.pid });
    expect(json(['vm', 'stop', 'dev']).state).toBe('stopped');
    expect(isAlive(vm.pid)).toBe(false);
    hostHoldsNothingOf(vm);
  });

  it('notices a root Firecracker that exits on its own, with the exit code that sudo relays', async () => {
    daemonWith(wrappers.crashing);
    const vm = json(['vm', 'start', 'dev']);
    let crashed: any = null;
    for (let i = 0; i < 60 && crashed === null; i++) {
      const v = json(['vm', 'show', 'dev']);
      if (v.state === 'error') crashed = v;
      else await sleep(50);
    }
    expect(crashed?.lastError).toMatch(/firecracker \(pid \d+\) exited with code 3/);
    expect(crashed.pid).toBeNull();
    hostHoldsNothingOf(vm);
  });

  it('a launch whose API socket never appears kills sudo and Firecracker, and leaves nothing', () => {
    daemonWith(wrappers.socketless);
    const r = asUser(['vm', 'start', 'dev']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/vmm\.spawn/);
    const vm = json(['vm', 'show', 'dev']);
    expect(vm).toMatchObject({ state: 'error', pid: null });
    // pgrep -f "--id <vm id>" matches sudo's command line too.
    hostHoldsNothingOf(vm);
  });

  it('removes a running VM with --force through sudo, leaving nothing', () => {
    daemonWith(env.env.BANGER_FIRECRACKER);
    const vm = json(['vm', 'start', 'dev']);
    expect(procUid(vm.pid)).toBe(0);
    const r = asUser(['vm', 'rm', '--force', 'dev']);
    expect(r.code, r.stderr).toBe(0);
    expect(isAlive(vm.pid)).toBe(false);
    hostHoldsNothingOf(vm);
    expect(existsSync(join(env.stateDir, 'vms', vm.id))).toBe(false);
    expect(json(['vm', 'ls'])).toEqual([]);
  });
});
