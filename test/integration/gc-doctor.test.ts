// banger gc and banger doctor as a user runs them: the built CLI and a real daemon. gc runs inside
// a throwaway network namespace, against leftovers made by hand there (a TAP, tagged iptables
// rules, a real loop device on a file under the state dir, a stray Firecracker stand-in, a stale
// socket) next to a running VM that must come through untouched. doctor runs against the real host.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BangerEnv, ROOT, STANDIN_DIR, makeImageFiles, isAlive } from '../helpers/banger-env.js';
import { HostNetns, privilegedSkipReason } from '../helpers/netns.js';
import { findFirecrackerProcesses, readCmdline } from '../../src/firecracker/proc.js';
import { SUDO_PROBES, isSudoRefusal } from '../../src/daemon/doctor.js';
import { until } from '../helpers/wait.js';

const skip = privilegedSkipReason();
if (skip) console.warn(`skipping gc tests: ${skip}`);

const fakeId = () => randomBytes(6).toString('hex');


/** Loop devices attached to FILE, from the real losetup. */
function loopsOn(file: string): string[] {
  const r = spawnSync('losetup', ['-j', file], { encoding: 'utf8' });
  return (r.stdout ?? '')
    .split('\n')
    .filter(Boolean)
    .map((l) => l.split(':')[0]);
}

interface GcItem {
  kind: string;
  handle: string;
  detail?: string;
  removed: boolean;
  error?: string;
}

describe.skipIf(skip !== null)('gc against real leftovers in a network namespace', () => {
  let ns: HostNetns;
  let env: BangerEnv;
  let vm: any;
  let loopFile = '';
  let stray: ChildProcess | null = null;
  const ids = { tap: fakeId(), rule: fakeId(), loop: fakeId(), proc: fakeId(), sock: fakeId() };
  const leftovers = { loop: '', strayPid: 0, straySock: '', staleSock: '' };

  const cli = (args: string[]) => env.cli(args, { prefix: ns.prefix });
  const json = <T = any>(args: string[]) => {
    const r = cli([...args, '--json']);
    if (r.code !== 0) throw new Error(`banger ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
    return JSON.parse(r.stdout) as T;
  };
  const sockets = () => join(env.env.XDG_RUNTIME_DIR, 'banger', 'vms');
  const lines = (items: GcItem[]) => items.map((i) => `${i.kind} ${i.handle}`).sort();

  beforeAll(async () => {
    ns = new HostNetns();
    env = new BangerEnv({ BANGER_BUILD_ID: 'gc-doctor-test' });
    const files = makeImageFiles(join(env.dir, 'src'), 16);
    const r = cli(['image', 'add', 'base', '--kernel', files.kernel, '--rootfs', files.rootfs]);
    expect(r.code, r.stderr).toBe(0);
    vm = json(['vm', 'create', '--name', 'keep', '--image', 'base']);
    expect(vm.state).toBe('running');

    // Leftovers, each named like banger's and owned by no VM.
    ns.exec(['ip', 'tuntap', 'add', 'dev', `bg${ids.tap}`, 'mode', 'tap']);
    const tag = ['-m', 'comment', '--comment', `banger:${ids.rule}`];
    ns.exec(['iptables', '-w', '-t', 'nat', '-A', 'POSTROUTING', '-s', '10.99.0.2/32', '-o', ns.uplink, ...tag, '-j', 'MASQUERADE']);
    ns.exec(['iptables', '-w', '-A', 'FORWARD', '-i', `bg${ids.rule}`, '-o', ns.uplink, ...tag, '-j', 'ACCEPT']);

    mkdirSync(join(env.stateDir, 'vms', ids.loop), { recursive: true });
    loopFile = join(env.stateDir, 'vms', ids.loop, 'cow.img');
    writeFileSync(loopFile, Buffer.alloc(1024 * 1024));
    const lo = spawnSync('losetup', ['--find', '--show', loopFile], { encoding: 'utf8' });
    expect(lo.status, lo.stderr).toBe(0);
    leftovers.loop = lo.stdout.trim();

    leftovers.straySock = join(sockets(), `${ids.proc}.sock`);
    stray = spawn(join(STANDIN_DIR, 'firecracker'), ['--api-sock', leftovers.straySock, '--id', ids.proc], { stdio: 'ignore' });
    await until('the stray stand-in to serve its socket', () => existsSync(leftovers.straySock));
    leftovers.strayPid = stray.pid!;
    expect(findFirecrackerProcesses().map((p) => p.pid)).toContain(leftovers.strayPid);

    leftovers.staleSock = join(sockets(), `${ids.sock}.sock`);
    writeFileSync(leftovers.staleSock, '');
  });

  afterAll(async () => {
    try {
      // Only loops still on our own file: the device number may serve someone else by now.
      if (loopFile) for (const dev of loopsOn(loopFile)) spawnSync('losetup', ['-d', dev]);
      if (stray?.pid && readCmdline(stray.pid)?.includes(ids.proc)) stray.kill('SIGKILL');
    } finally {
      await env?.cleanup();
      ns?.destroy();
    }
  });

  it('lists exactly the leftovers on a dry run, and removes nothing', () => {
    const res = json<{ dryRun: boolean; items: GcItem[] }>(['gc', '--dry-run']);
    expect(res.dryRun).toBe(true);
    expect(lines(res.items)).toEqual(
      [
        `process ${leftovers.strayPid}`,
        `loop ${leftovers.loop}`,
        `nat -t filter -A FORWARD -i bg${ids.rule} -o ${ns.uplink} -m comment --comment banger:${ids.rule} -j ACCEPT`,
        `nat -t nat -A POSTROUTING -s 10.99.0.2/32 -o ${ns.uplink} -m comment --comment banger:${ids.rule} -j MASQUERADE`,
        `tap bg${ids.tap}`,
        `socket ${leftovers.straySock}`,
        `socket ${leftovers.staleSock}`,
      ].sort(),
    );
    expect(res.items.find((i) => i.kind === 'loop')?.detail).toBe(loopFile);
    expect(res.items.every((i) => i.removed === false && !i.error)).toBe(true);

    expect(ns.links()).toContain(`bg${ids.tap}`);
    expect(ns.rules().filter((r) => r.includes(`banger:${ids.rule}`))).toHaveLength(2);
    expect(loopsOn(loopFile)).toEqual([leftovers.loop]);
    expect(isAlive(leftovers.strayPid)).toBe(true);
    expect(existsSync(leftovers.staleSock)).toBe(true);

    // The human form says the same, one line each.
    const human = cli(['gc', '--dry-run']);
    expect(human.code, human.stderr).toBe(0);
    expect(human.stdout.trim().split('\n')).toHaveLength(7);
    expect(human.stdout).toContain(`would remove: tap bg${ids.tap}`);
  });

  it('removes every leftover and leaves the running VM its TAP, rules, socket and process', async () => {
    const res = json<{ items: GcItem[] }>(['gc']);
    expect(res.items).toHaveLength(7);
    expect(res.items.filter((i) => !i.removed || i.error)).toEqual([]);

    expect(ns.links()).not.toContain(`bg${ids.tap}`);
    expect(ns.rules().filter((r) => r.includes(`banger:${ids.rule}`))).toEqual([]);
    expect(loopsOn(loopFile)).toEqual([]);
    await until('the stray stand-in to die', () => !isAlive(leftovers.strayPid));
    expect(existsSync(leftovers.straySock)).toBe(false);
    expect(existsSync(leftovers.staleSock)).toBe(false);

    const after = json(['vm', 'show', 'keep']);
    expect(after).toMatchObject({ state: 'running', pid: vm.pid });
    expect(isAlive(vm.pid)).toBe(true);
    expect(ns.links()).toContain(vm.tap);
    expect(ns.rules().filter((r) => r.includes(`banger:${vm.id}`))).toHaveLength(3);
    expect(existsSync(join(sockets(), `${vm.id}.sock`))).toBe(true);
  });

  it('finds nothing the second time', () => {
    expect(json<{ items: GcItem[] }>(['gc']).items).toEqual([]);
    const human = cli(['gc']);
    expect(human.code, human.stderr).toBe(0);
    expect(human.stdout).toBe('nothing to collect\n');
    // And the VM still stops cleanly, holding nothing afterwards.
    expect(json(['vm', 'stop', 'keep']).state).toBe('stopped');
    expect(json<{ items: GcItem[] }>(['gc', '--dry-run']).items).toEqual([]);
  });
});

describe('doctor against the real host', () => {
  let env: BangerEnv;
  beforeAll(() => {
    env = new BangerEnv({ BANGER_BUILD_ID: 'gc-doctor-test' });
  });
  afterAll(async () => {
    await env?.cleanup();
  });

  it('answers every check with a status, and a fix for each that is not ok', () => {
    const r = env.cli(['doctor', '--json']);
    expect([0, 1]).toContain(r.code);
    const report = JSON.parse(r.stdout) as { checks: { name: string; status: string; message: string; fix?: string }[]; strategy: string | null };
    expect(report.checks.map((c) => c.name)).toEqual(
      expect.arrayContaining(['kvm', 'firecracker', 'device-mapper', 'root disk', 'loop', 'tun', 'iptables', 'host tools', 'sudo', 'ip_forward', 'uplink', 'address pool']),
    );
    for (const c of report.checks) {
      expect(['ok', 'warn', 'fail'], c.name).toContain(c.status);
      expect(c.message.length, c.name).toBeGreaterThan(0);
      if (c.status !== 'ok') expect(c.fix?.length ?? 0, `${c.name} has a fix`).toBeGreaterThan(0);
    }
    expect(r.code).toBe(report.checks.some((c) => c.status === 'fail') ? 1 : 0);
    // BangerEnv puts the stand-in first on PATH: found there (it answers no --version, so at most a
    // warning). Not root, the launcher's sudo would not find it there, and doctor says so.
    const fc = report.checks.find((c) => c.name === 'firecracker')!;
    expect(fc.message).toContain(join(STANDIN_DIR, 'firecracker'));
    if (process.getuid?.() === 0) expect(fc.status).not.toBe('fail');
    else expect(fc).toMatchObject({ status: 'fail', fix: `set BANGER_FIRECRACKER=${join(STANDIN_DIR, 'firecracker')}` });
    expect(['dm', 'copy']).toContain(report.strategy);
  });

  it('fails the Firecracker check, with the fix, and exits 1 when BANGER_FIRECRACKER points nowhere', async () => {
    const nowhere = join(env.dir, 'nowhere', 'firecracker');
    env.cli(['daemon', 'stop']);
    const r = env.cli(['doctor', '--json'], { env: { BANGER_FIRECRACKER: nowhere } });
    expect(r.code).toBe(1);
    const fc = (JSON.parse(r.stdout).checks as { name: string; status: string; message: string; fix?: string }[]).find((c) => c.name === 'firecracker')!;
    expect(fc).toMatchObject({ status: 'fail', message: `${nowhere} was not found` });
    expect(fc.fix).toContain('BANGER_FIRECRACKER');

    const human = env.cli(['doctor'], { env: { BANGER_FIRECRACKER: nowhere } });
    expect(human.code).toBe(1);
    expect(human.stdout).toMatch(/^FAIL {2}firecracker: /m);
    expect(human.stdout).toContain(`      fix: install Firecracker from`);
    env.cli(['daemon', 'stop']);
  });
});

/** Why the sudoers snippet cannot be tried as another user here, or null when it can. */
function sudoersSkipReason(): string | null {
  if (process.getuid?.() !== 0) return 'not root';
  for (const tool of ['unshare', 'setpriv', 'sudo', 'visudo', 'mount']) {
    if (spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0) return `${tool} is not installed`;
  }
  if (spawnSync('id', ['-u', 'nobody']).status !== 0) return 'there is no user nobody';
  return null;
}
const sudoSkip = sudoersSkipReason();
if (sudoSkip) console.warn(`skipping the sudoers snippet test: ${sudoSkip}`);

const SUDO_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

describe.skipIf(sudoSkip !== null)('the sudoers snippet of docs/sudoers.md', () => {
  let dir = '';
  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  // The snippet goes over /etc/sudoers inside a private mount namespace only (unshare -m), so the
  // host's sudo configuration is never touched; the probes run as the user nobody.
  it('lets every one of doctor\'s sudo probes through without a password, and nothing else', () => {
    const doc = readFileSync(join(ROOT, 'docs/sudoers.md'), 'utf8');
    const snippet = /```sudoers\n([\s\S]*?)```/.exec(doc)![1];
    // This host's paths for the documented ones, as the doc tells the reader to do.
    const local = snippet.replace(/\/[\w/.-]*\/([\w.-]+)(?=[,\s])/g, (path, tool: string) => {
      const r = spawnSync('sh', ['-c', `PATH=${SUDO_PATH} command -v ${tool}`], { encoding: 'utf8' });
      return r.status === 0 && r.stdout.startsWith('/') ? r.stdout.trim() : path;
    });
    const uid = spawnSync('id', ['-u', 'nobody'], { encoding: 'utf8' }).stdout.trim();
    const gid = spawnSync('id', ['-g', 'nobody'], { encoding: 'utf8' }).stdout.trim();
    dir = mkdtempSync(join(tmpdir(), 'bgt-sudoers-'));
    const file = join(dir, 'sudoers');
    writeFileSync(file, `Defaults env_reset\nDefaults secure_path="${SUDO_PATH}"\n${local.replace(/\balice\b/g, 'nobody')}`);
    chmodSync(file, 0o440);
    const check = spawnSync('visudo', ['-cf', file], { encoding: 'utf8' });
    expect(check.status, check.stdout + check.stderr).toBe(0);

    const asNobody = (argv: string[]) => {
      const r = spawnSync(
        'unshare',
        ['-m', 'sh', '-c', 'mount --bind "$0" /etc/sudoers && exec "$@"', file, 'setpriv', `--reuid=${uid}`, `--regid=${gid}`, '--clear-groups', 'sudo', '-n', ...argv],
        { encoding: 'utf8', timeout: 10_000 },
      );
      return { code: r.status ?? 128, stderr: r.stderr ?? '' };
    };
    const refused = Object.entries(SUDO_PROBES)
      .filter(([, argv]) => {
        const r = asNobody(argv);
        return isSudoRefusal(r.code, r.stderr);
      })
      .map(([tool]) => tool);
    expect(refused).toEqual([]);
    // The snippet is not blanket sudo: doctor's first probe is refused, and so is any other command.
    for (const argv of [['true'], ['cat', '/etc/shadow']]) {
      const r = asNobody(argv);
      expect(isSudoRefusal(r.code, r.stderr), argv.join(' ')).toBe(true);
    }
  });
});
