// doctor's classification against a fake host (FakeRunner with the fake disk and network tools,
// and fake file probes); gc's ownership plan as literals; gc's apply against the fake host's
// tables, real files and a real process.
import { describe, it, expect, afterEach } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync, realpathSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { FakeRunner, fail, ok } from '../fakes/fake-runner.js';
import { installFakeNet, type FakeNet } from '../fakes/fake-net.js';
import { installFakeDisk, type FakeDisk } from '../fakes/fake-disk.js';
import { MemoryJournal } from '../../src/core/memory-journal.js';
import type { ResourceRecord } from '../../src/core/ports.js';
import type { Settings } from '../../src/core/config.js';
import { ensureNat } from '../../src/host/nat.js';
import { selectStrategy } from '../../src/host/rootdisk.js';
import { PRIVILEGED_TOOLS, SudoRunner } from '../../src/host/sudo-runner.js';
import { isSameProcess, readStartTime } from '../../src/firecracker/proc.js';
import {
  DOCTOR_CHECKS,
  LOW_DISK_BYTES,
  SUDO_PROBES,
  isSudoRefusal,
  runDoctor,
  type DoctorCheck,
  type DoctorEnv,
  type DoctorProbes,
} from '../../src/daemon/doctor.js';
import { collectGarbage, gcScope, planGc, type GcContext, type GcScope, type GcVm, type HostInventory } from '../../src/daemon/gc.js';

// ---------------------------------------------------------------------------------------------
// doctor

interface FakeHostOptions {
  /** Command names (or paths) that exist as executables. */
  executables?: string[];
  /** Error code per device that fails to open read-write. */
  deviceErrors?: Record<string, string>;
  /** Paths that do not exist. */
  missing?: string[];
  freeBytes?: number;
}

const ALL_TOOLS = ['firecracker', 'iptables', 'ip', 'losetup', 'blockdev', 'dmsetup', 'sysctl', 'e2fsck', 'resize2fs', 'debugfs', 'ssh', 'ssh-keygen', 'sudo'];

function fakeProbes(o: FakeHostOptions = {}): DoctorProbes {
  const executables = new Set(o.executables ?? ALL_TOOLS);
  const missing = new Set(o.missing ?? []);
  return {
    which: async (command) => {
      if (!executables.has(command)) return null;
      return command.includes('/') ? command : `/usr/bin/${command}`;
    },
    openDevice: async (path) => (missing.has(path) ? 'ENOENT' : (o.deviceErrors?.[path] ?? null)),
    exists: async (path) => !missing.has(path),
    freeSpace: async (path) => ({ freeBytes: o.freeBytes ?? 50 * 1024 ** 3, device: 1, probed: path }),
  };
}

interface FakeDoctorHost {
  runner: FakeRunner;
  net: FakeNet;
  disk: FakeDisk;
  env: DoctorEnv;
}

function fakeDoctorHost(
  opts: FakeHostOptions & {
    settings?: Partial<Settings>;
    isRoot?: boolean;
    usedAddresses?: number;
    hasDeviceMapper?: boolean;
    ipForward?: 0 | 1;
    defaultRoutes?: Record<string, unknown>[];
    routes?: Record<string, unknown>[];
    iptablesVersion?: string;
  } = {},
): FakeDoctorHost {
  const runner = new FakeRunner();
  const net = installFakeNet(runner, { ipForward: opts.ipForward ?? 1, defaultRoutes: opts.defaultRoutes, routes: opts.routes });
  const disk = installFakeDisk(runner, { hasDeviceMapper: opts.hasDeviceMapper ?? true });
  runner.handle('firecracker', (argv) => (argv[1] === '--version' ? ok('Firecracker v1.16.1\n\n') : fail(1, 'unexpected')));
  runner.handle('iptables', (argv) => (argv[1] === '--version' ? ok(`${opts.iptablesVersion ?? 'iptables v1.8.9 (nf_tables)'}\n`) : net.iptables(argv)));
  const probes = fakeProbes(opts);
  const settings = { firecracker: 'firecracker', rootfsStrategy: 'auto' as const, netPool: '172.16.0.0/16', uplink: null, ...opts.settings };
  const env: DoctorEnv = {
    runner,
    probes,
    settings,
    paths: { stateDir: '/home/u/.local/state/banger', dataDir: '/home/u/.local/share/banger' },
    isRoot: opts.isRoot ?? true,
    usedAddresses: opts.usedAddresses ?? 0,
    strategy: () => selectStrategy(runner, settings.rootfsStrategy, { hasMapperControl: () => probes.exists('/dev/mapper/control') }),
    sudoersDoc: '/opt/banger/docs/sudoers.md',
    timeoutMs: 2000,
  };
  return { runner, net, disk, env };
}

const byName = (checks: DoctorCheck[]) => Object.fromEntries(checks.map((c) => [c.name, c]));
const only = (...names: string[]) => DOCTOR_CHECKS.filter((c) => names.includes(c.name));

describe('doctor', () => {
  it('passes every check on a healthy host, in a fixed order, with dm in force', async () => {
    const { env } = fakeDoctorHost();
    const report = await runDoctor(env);
    expect(report.checks.map((c) => c.name)).toEqual([
      'kvm',
      'firecracker',
      'device-mapper',
      'root disk',
      'loop',
      'tun',
      'iptables',
      'host tools',
      'sudo',
      'ip_forward',
      'uplink',
      'address pool',
      'disk space (state)',
      'disk space (data)',
    ]);
    expect(report.checks.filter((c) => c.status !== 'ok')).toEqual([]);
    expect(report.strategy).toBe('dm');
    const c = byName(report.checks);
    expect(c.firecracker.message).toBe('/usr/bin/firecracker, Firecracker v1.16.1');
    expect(c.iptables.message).toContain('nft backend');
    expect(c['root disk'].message).toMatch(/^dm \(auto chose dm/);
    expect(c.uplink.message).toBe("eth0 (the default route's interface)");
    expect(c['address pool'].message).toBe('172.16.0.0/16: 16384 of 16384 /30s free, no overlap with host routes');
    expect(report.checks.every((x) => x.fix === undefined)).toBe(true);
  });

  it('on a bare host fails or warns each missing prerequisite, each with its fix', async () => {
    const { env } = fakeDoctorHost({
      executables: ['ip', 'sysctl', 'ssh'],
      missing: ['/dev/kvm', '/dev/mapper/control', '/dev/loop-control', '/dev/net/tun'],
      hasDeviceMapper: false,
      ipForward: 0,
      defaultRoutes: [],
      routes: [{ dst: '172.16.8.0/24', dev: 'docker0', protocol: 'kernel', scope: 'link' }],
      freeBytes: 512 * 1024 ** 2,
    });
    const report = await runDoctor(env);
    const c = byName(report.checks);
    const statuses = Object.fromEntries(report.checks.map((x) => [x.name, x.status]));
    expect(statuses).toEqual({
      kvm: 'fail',
      firecracker: 'fail',
      'device-mapper': 'warn',
      'root disk': 'ok',
      loop: 'warn',
      tun: 'fail',
      iptables: 'fail',
      'host tools': 'fail',
      sudo: 'ok',
      ip_forward: 'warn',
      uplink: 'warn',
      'address pool': 'fail',
      'disk space (state)': 'warn',
      'disk space (data)': 'warn',
    });
    for (const x of report.checks) if (x.status !== 'ok') expect(x.fix, x.name).toBeTruthy();
    expect(report.strategy).toBe('copy');
    expect(c.kvm.fix).toContain('modprobe kvm_intel');
    expect(c.firecracker.fix).toContain('BANGER_FIRECRACKER');
    expect(c['device-mapper'].fix).toBe('sudo modprobe dm_mod dm_snapshot');
    expect(c['root disk'].message).toMatch(/^copy \(auto chose copy/);
    expect(c.tun.fix).toBe('sudo modprobe tun');
    expect(c['host tools'].message).toBe('not on PATH: losetup, blockdev, dmsetup, e2fsck, resize2fs, debugfs, ssh-keygen');
    expect(c['host tools'].fix).toBe('install them (Debian/Ubuntu: sudo apt-get install mount util-linux dmsetup e2fsprogs openssh-client)');
    expect(c.ip_forward.message).toContain('banger sets it to 1');
    expect(c.uplink.fix).toContain('--no-nat');
    expect(c['address pool'].message).toBe('pool 172.16.0.0/16 overlaps host route 172.16.8.0/24 dev docker0');
    expect(c['address pool'].fix).toBe('set BANGER_NET_POOL=10.213.0.0/16 (no host route uses it)');
    expect(c['disk space (state)'].message).toBe('0.5 GiB free on the filesystem of /home/u/.local/state/banger; VM disks and images need more than 2.0 GiB');
    expect(c['disk space (state)'].fix).toContain('XDG_STATE_HOME');
  });

  it('fails the Firecracker check with the fix when BANGER_FIRECRACKER points nowhere, and warns on a binary that answers no version', async () => {
    const nowhere = fakeDoctorHost({ settings: { firecracker: '/opt/none/firecracker' } });
    const [c1] = (await runDoctor(nowhere.env, only('firecracker'))).checks;
    expect(c1).toMatchObject({ status: 'fail', message: '/opt/none/firecracker was not found' });
    expect(c1.fix).toContain('set BANGER_FIRECRACKER to its path');

    const broken = fakeDoctorHost();
    broken.runner.handle('firecracker', () => fail(1, "fc-standin: unexpected argument '--version'\n"));
    const [c2] = (await runDoctor(broken.env, only('firecracker'))).checks;
    expect(c2.status).toBe('warn');
    expect(c2.message).toBe("/usr/bin/firecracker is there, but `firecracker --version` exited 1: fc-standin: unexpected argument '--version'");

    const old = fakeDoctorHost();
    old.runner.handle('firecracker', () => ok('Firecracker v0.25.2\n'));
    const [c3] = (await runDoctor(old.env, only('firecracker'))).checks;
    expect(c3.status).toBe('warn');
    expect(c3.fix).toContain('v1.x release');
  });

  it('bounds each check: a hung tool fails its own check and doctor still answers', async () => {
    const host = fakeDoctorHost();
    host.env.timeoutMs = 300;
    host.runner.handle('firecracker', () => new Promise(() => {}));
    const t = Date.now();
    const report = await runDoctor(host.env);
    expect(Date.now() - t).toBeLessThan(2000);
    const c = byName(report.checks);
    expect(c.firecracker).toMatchObject({ status: 'fail', message: 'no answer within 0.3 s (a host tool hung)' });
    expect(c.firecracker.fix).toBeTruthy();
    expect(report.checks.filter((x) => x.status !== 'ok').map((x) => x.name)).toEqual(['firecracker']);
    // The tool's own timeout is below the check's, so the runner kills it first.
    expect(host.runner.calls.find((a) => a[0] === 'firecracker')).toEqual(['firecracker', '--version']);
  });

  it('fails the sudo check naming each tool sudo refuses, with the sudoers snippet as the fix', async () => {
    const host = fakeDoctorHost({ isRoot: false });
    const refused = new Set(['true', 'dmsetup', 'sh']);
    // FakeRunner strips "sudo -n"; these handlers answer as sudo would for each probe.
    for (const tool of ['true', ...Object.keys(SUDO_PROBES)]) {
      host.runner.handle(tool, () => (refused.has(tool) ? fail(1, 'sudo: a password is required\n') : ok(`${tool} 1.0\n`)));
    }
    const [c] = (await runDoctor(host.env, only('sudo'))).checks;
    expect(c.status).toBe('fail');
    expect(c.message).toBe('bangerd is not root, and sudo -n asks for a password (or refuses) for: dmsetup, sh');
    expect(c.fix).toBe('install docs/sudoers.md as /etc/sudoers.d/banger (the snippet is in /opt/banger/docs/sudoers.md)');
    expect(host.runner.calls).toContainEqual(['sudo', '-n', 'true']);
    expect(host.runner.calls).toContainEqual(['sudo', '-n', 'sh', '-c', 'echo $$ > "$0"; exec "$@"', '/dev/null', 'true']);

    for (const tool of Object.keys(SUDO_PROBES)) refused.delete(tool);
    const [c2] = (await runDoctor(host.env, only('sudo'))).checks;
    expect(c2.status).toBe('ok');
    expect(c2.message).toContain('passwordless sudo works for losetup, dmsetup');

    const root = fakeDoctorHost({ isRoot: true });
    const [c3] = (await runDoctor(root.env, only('sudo'))).checks;
    expect(c3).toEqual({ name: 'sudo', status: 'ok', message: 'bangerd runs as root: no sudo needed' });
    expect(root.runner.calls.filter((a) => a[0] === 'sudo')).toEqual([]);
  });

  it('probes exactly the tools the sudoers snippet in docs/sudoers.md allows, and the snippet lists exactly the privileged ones', () => {
    const doc = readFileSync(join(import.meta.dirname, '../../docs/sudoers.md'), 'utf8');
    const snippet = /```sudoers\n([\s\S]*?)```/
      .exec(doc)![1]
      .split('\n')
      .filter((l) => !l.startsWith('#'))
      .join('\n');
    const commands = [...snippet.matchAll(/(\/[\w/.-]+)/g)].map((m) => basename(m[1]));
    expect(commands.sort()).toEqual([...PRIVILEGED_TOOLS, 'sh', 'firecracker'].sort());
    expect(Object.keys(SUDO_PROBES).sort()).toEqual([...PRIVILEGED_TOOLS, 'sh'].sort());
  });

  it('as a non-root daemon, points a check whose tool sudo refused at the sudoers snippet', async () => {
    const host = fakeDoctorHost({ isRoot: false });
    host.env.runner = new SudoRunner(host.runner);
    host.runner.handle('ip', () => fail(1, 'sudo: a password is required\n'));
    const c = byName((await runDoctor(host.env, only('uplink', 'address pool'))).checks);
    expect(c.uplink.status).toBe('warn');
    expect(c.uplink.fix).toBe('install docs/sudoers.md as /etc/sudoers.d/banger (the snippet is in /opt/banger/docs/sudoers.md)');
    expect(c['address pool'].status).toBe('fail');
    expect(c['address pool'].fix).toBe(c.uplink.fix);
    expect(host.runner.calls).toContainEqual(['sudo', '-n', 'ip', '-j', 'route', 'show']);
  });

  it('as a non-root daemon, fails a Firecracker that is on PATH but not where sudo looks', async () => {
    const host = fakeDoctorHost({ isRoot: false, executables: [...ALL_TOOLS] });
    const [c1] = (await runDoctor(host.env, only('firecracker'))).checks;
    expect(c1).toMatchObject({ status: 'fail', fix: 'set BANGER_FIRECRACKER=/usr/bin/firecracker' });
    const installed = fakeDoctorHost({ isRoot: false, executables: [...ALL_TOOLS, '/usr/local/bin/firecracker'] });
    expect((await runDoctor(installed.env, only('firecracker'))).checks[0].status).toBe('ok');
  });

  it('tells sudo refusals from the tools answering', () => {
    expect(isSudoRefusal(1, 'sudo: a password is required\n')).toBe(true);
    expect(isSudoRefusal(1, 'sudo: a terminal is required to read the password; either use the -S option\n')).toBe(true);
    expect(isSudoRefusal(1, "Sorry, user bob is not allowed to execute '/usr/sbin/losetup --version' as root on h.\n")).toBe(true);
    expect(isSudoRefusal(1, 'Usage: resize2fs [-d debug_flags] [-f] [-F] device [new_size]\n')).toBe(false);
    expect(isSudoRefusal(0, '')).toBe(false);
  });

  it('fails device-mapper and the root disk when dm is asked for and missing, and accepts copy when asked for', async () => {
    const dm = fakeDoctorHost({ hasDeviceMapper: false, settings: { rootfsStrategy: 'dm' } });
    const r1 = await runDoctor(dm.env, only('device-mapper', 'root disk'));
    expect(r1.checks.map((x) => x.status)).toEqual(['fail', 'fail']);
    expect(r1.checks[1].fix).toContain('BANGER_ROOTFS_STRATEGY=copy');
    expect(r1.strategy).toBeNull();

    const copy = fakeDoctorHost({ hasDeviceMapper: false, settings: { rootfsStrategy: 'copy' } });
    const r2 = await runDoctor(copy.env, only('device-mapper', 'root disk', 'host tools'));
    expect(r2.checks.map((x) => x.status)).toEqual(['ok', 'ok', 'ok']);
    expect(r2.strategy).toBe('copy');

    // Without the dm tools the copy strategy still works: a warning, not a failure.
    const noDmTools = fakeDoctorHost({ executables: ALL_TOOLS.filter((t) => t !== 'dmsetup' && t !== 'losetup'), settings: { rootfsStrategy: 'copy' } });
    const [tools] = (await runDoctor(noDmTools.env, only('host tools'))).checks;
    expect(tools.status).toBe('warn');
  });

  it('warns about /dev/kvm the daemon cannot open when Firecracker runs through sudo, and fails as root', async () => {
    const user = fakeDoctorHost({ isRoot: false, deviceErrors: { '/dev/kvm': 'EACCES' } });
    const [k1] = (await runDoctor(user.env, only('kvm'))).checks;
    expect(k1.status).toBe('warn');
    expect(k1.fix).toContain('usermod -aG kvm');
    const root = fakeDoctorHost({ isRoot: true, deviceErrors: { '/dev/kvm': 'EACCES' } });
    const [k2] = (await runDoctor(root.env, only('kvm'))).checks;
    expect(k2.status).toBe('fail');
  });

  it('counts free /30s against the VMs and fails an exhausted pool', async () => {
    const some = fakeDoctorHost({ settings: { netPool: '10.20.0.0/24' }, usedAddresses: 5 });
    expect((await runDoctor(some.env, only('address pool'))).checks[0].message).toBe('10.20.0.0/24: 59 of 64 /30s free, no overlap with host routes');
    const full = fakeDoctorHost({ settings: { netPool: '10.20.0.0/30' }, usedAddresses: 1 });
    const [c] = (await runDoctor(full.env, only('address pool'))).checks;
    expect(c.status).toBe('fail');
    expect(c.fix).toContain('banger vm rm');
  });

  it('checks BANGER_UPLINK names an interface, and reads the iptables backend', async () => {
    const bad = fakeDoctorHost({ settings: { uplink: 'wlan9' } });
    const [u] = (await runDoctor(bad.env, only('uplink'))).checks;
    expect(u.status).toBe('warn');
    expect(u.message).toContain('BANGER_UPLINK names interface wlan9, which does not exist');
    const good = fakeDoctorHost({ settings: { uplink: 'eth0' } });
    expect((await runDoctor(good.env, only('uplink'))).checks[0]).toMatchObject({ status: 'ok', message: 'eth0 (BANGER_UPLINK)' });

    const legacy = fakeDoctorHost({ iptablesVersion: 'iptables v1.8.7 (legacy)' });
    expect((await runDoctor(legacy.env, only('iptables'))).checks[0].message).toBe('/usr/bin/iptables, v1.8.7 (legacy backend)');
  });

  it('warns under 2 GiB free and not at it', async () => {
    const at = fakeDoctorHost({ freeBytes: LOW_DISK_BYTES });
    expect((await runDoctor(at.env, only('disk space (data)'))).checks[0].status).toBe('ok');
    const below = fakeDoctorHost({ freeBytes: LOW_DISK_BYTES - 1 });
    expect((await runDoctor(below.env, only('disk space (data)'))).checks[0].status).toBe('warn');
  });
});

// ---------------------------------------------------------------------------------------------
// gc: the plan, as literals

const A = 'aaaaaaaaaaaa'; // running
const B = 'bbbbbbbbbbbb'; // stopped, with leftovers of a failed teardown
const C = 'cccccccccccc'; // deleted; its journal rows remain
const D = 'dddddddddddd'; // never known: leftovers of a crash
const S = 'eeeeeeeeeeee'; // starting

const row = (vmId: string, kind: ResourceRecord['kind'], handle: string, detail = ''): ResourceRecord => ({ vmId, kind, handle, detail, recordedAt: '2025-01-01T00:00:00.000Z' });
const vm = (id: string, state: GcVm['state'], pid: number | null = null): GcVm => ({ id, state, tap: `bg${id}`, pid });
const rule = (vmId: string, table = 'nat'): HostInventory['rules'][number] => ({
  table,
  vmId,
  spec:
    table === 'nat'
      ? ['nat', 'POSTROUTING', '-s', '172.16.0.2/32', '-o', 'eth0', '-m', 'comment', '--comment', `banger:${vmId}`, '-j', 'MASQUERADE']
      : ['filter', 'FORWARD', '-i', `bg${vmId}`, '-o', 'eth0', '-m', 'comment', '--comment', `banger:${vmId}`, '-j', 'ACCEPT'],
});
const loop = (name: string, backingFile: string, isBackingFileDeleted = false) => ({ name, backingFile, isBackingFileDeleted });
const proc = (pid: number, vmId: string, apiSock: string) => ({ pid, vmId, startTime: `${pid}0`, apiSock });
const emptyInventory = (): HostInventory => ({ loops: [], mappers: [], taps: [], rules: [], sockets: [], processes: [], files: [] });

const SCOPE: GcScope = { vmsDirs: ['/s/vms'], imagesDirs: ['/d/images'], socketsDirs: ['/r/vms'] };
const IMAGE = '/d/images/0123456789ab/rootfs.ext4';

describe('gc plan', () => {
  const vms = [vm(A, 'running', 100), vm(B, 'stopped')];
  const journal = [
    row(A, 'loop', '/dev/loop0', IMAGE),
    row(A, 'loop', '/dev/loop1', `/s/vms/${A}/cow.img`),
    row(A, 'dm', `banger-${A}`, 'snapshot'),
    row(A, 'tap', `bg${A}`),
    row(A, 'nat', 'eth0', '172.16.0.2'),
    row(A, 'process', '100:1000'),
    row(A, 'socket', `/r/vms/${A}.sock`),
    row(B, 'tap', `bg${B}`),
    row(B, 'nat', 'eth0', '172.16.0.6'),
    row(C, 'tap', `bg${C}`),
    row(C, 'file', `/s/vms/${C}/rootfs.ext4`),
    row(C, 'loop', '/dev/loop7', `/s/vms/${C}/cow.img`),
  ];
  const inventory: HostInventory = {
    loops: [
      loop('/dev/loop0', IMAGE),
      loop('/dev/loop1', `/s/vms/${A}/cow.img`),
      loop('/dev/loop2', `/s/vms/${B}/cow.img`),
      loop('/dev/loop3', IMAGE),
      loop('/dev/loop4', '/home/u/other.img'),
      loop('/dev/loop5', `/s/vms/${D}/cow.img`, true),
      loop('/dev/loop6', '/s/vmsx/not-ours.img'),
    ],
    mappers: [`banger-${A}`, `banger-${B}-origin`, `banger-${B}`, 'cryptroot', 'banger-notes'],
    taps: [`bg${A}`, `bg${B}`, `bg${C}`, `bg${D}`],
    rules: [rule(A), rule(A, 'filter'), rule(B), rule(D, 'filter')],
    sockets: [`/r/vms/${A}.sock`, `/r/vms/${D}.sock`],
    processes: [proc(100, A, `/r/vms/${A}.sock`), proc(200, A, '/tmp/stray.sock'), proc(300, D, `/r/vms/${D}.sock`), proc(400, '123412341234', '/other/install/vms/x.sock')],
    files: [`/s/vms/${C}/rootfs.ext4`],
  };

  it('lists exactly what no active VM owns, processes first and snapshots before origins', () => {
    const plan = planGc(inventory, vms, journal, SCOPE);
    expect(plan.map((o) => `${o.kind} ${o.handle}`)).toEqual([
      'process 200',
      'process 300',
      `dm banger-${B}`,
      `dm banger-${B}-origin`,
      'loop /dev/loop2',
      'loop /dev/loop3',
      'loop /dev/loop5',
      `nat -t nat -A POSTROUTING -s 172.16.0.2/32 -o eth0 -m comment --comment banger:${B} -j MASQUERADE`,
      `nat -t filter -A FORWARD -i bg${D} -o eth0 -m comment --comment banger:${D} -j ACCEPT`,
      `tap bg${B}`,
      `tap bg${C}`,
      `tap bg${D}`,
      `socket /r/vms/${D}.sock`,
      `file /s/vms/${C}/rootfs.ext4`,
      `journal ${C} tap bg${C}`,
      `journal ${C} file /s/vms/${C}/rootfs.ext4`,
      `journal ${C} loop /dev/loop7`,
    ]);
    const get = (kind: string, handle: string) => plan.find((o) => o.kind === kind && o.handle === handle)!;
    expect(get('loop', '/dev/loop5').detail).toBe(`/s/vms/${D}/cow.img (deleted)`);
    expect(get('loop', '/dev/loop2').vmId).toBe(B);
    expect(get('process', '200')).toMatchObject({ vmId: A, process: { pid: 200, startTime: '2000' } });
    // Removing a stopped VM's leftover settles its journal rows; a deleted VM's row is settled by its object.
    expect(get('tap', `bg${B}`).settles).toEqual([row(B, 'tap', `bg${B}`)]);
    expect(get('nat', `-t nat -A POSTROUTING -s 172.16.0.2/32 -o eth0 -m comment --comment banger:${B} -j MASQUERADE`).settles).toEqual([row(B, 'nat', 'eth0', '172.16.0.6')]);
    expect(get('tap', `bg${C}`).settles).toEqual([row(C, 'tap', `bg${C}`)]);
    expect(get('file', `/s/vms/${C}/rootfs.ext4`).settles).toEqual([row(C, 'file', `/s/vms/${C}/rootfs.ext4`)]);
    expect(get('tap', `bg${D}`).settles).toEqual([]);
  });

  it('owns nothing of a VM once it is stopped, and everything of it while it is stopping or starting', () => {
    const stopped = planGc(inventory, [vm(A, 'stopped'), vm(B, 'stopped')], journal, SCOPE);
    expect(stopped.filter((o) => o.vmId === A).map((o) => `${o.kind} ${o.handle}`)).toEqual([
      'process 100',
      'process 200',
      `dm banger-${A}`,
      'loop /dev/loop1',
      `nat ${['-t', 'nat', '-A', ...rule(A).spec.slice(1)].join(' ')}`,
      `nat ${['-t', 'filter', '-A', ...rule(A, 'filter').spec.slice(1)].join(' ')}`,
      `tap bg${A}`,
      `socket /r/vms/${A}.sock`,
    ]);
    const stopping = planGc(inventory, [vm(A, 'stopping', 100), vm(B, 'stopped')], journal, SCOPE);
    expect(stopping.filter((o) => o.vmId === A)).toEqual([]);
  });

  it('leaves an unjournaled image loop alone while a VM is starting (it journals it a moment after attaching)', () => {
    const inv = { ...emptyInventory(), loops: [loop('/dev/loop3', IMAGE), loop('/dev/loop8', `/s/vms/${S}/cow.img`)], taps: [`bg${S}`], processes: [proc(500, S, `/r/vms/${S}.sock`)] };
    expect(planGc(inv, [vm(S, 'starting')], [], SCOPE)).toEqual([]);
    expect(planGc(inv, [vm(S, 'error')], [], SCOPE).map((o) => `${o.kind} ${o.handle}`)).toEqual(['process 500', 'loop /dev/loop3', 'loop /dev/loop8', `tap bg${S}`]);
  });

  it('ignores names that are not banger\'s and processes of other installations', () => {
    const inv = {
      ...emptyInventory(),
      mappers: ['banger-xyz', 'vg0-root', 'banger-', `banger-${D}-cow`],
      taps: ['bgzz', 'br0', 'bg'],
      sockets: ['/r/vms/readme.sock'],
      loops: [loop('/dev/loop1', '/s/vms'), loop('/dev/loop2', '/d/imagesx/a.img')],
      processes: [proc(600, D, '/elsewhere/d.sock')],
    };
    expect(planGc(inv, [], [], SCOPE)).toEqual([]);
    // The same process is ours when our journal knows its id.
    expect(planGc(inv, [], [row(D, 'process', '600:6000')], SCOPE).map((o) => `${o.kind} ${o.handle}`)).toEqual(['process 600', `journal ${D} process 600:6000`]);
  });

  it('scopes loops and sockets to the real paths of symlinked directories too', () => {
    const dir = mkdtempSync(join(tmpdir(), 'bgt-scope-'));
    try {
      mkdirSync(join(dir, 'real/vms'), { recursive: true });
      symlinkSync(join(dir, 'real'), join(dir, 'link'));
      const scope = gcScope({ vmsDir: join(dir, 'link/vms'), imagesDir: join(dir, 'none/images'), vmSocketsDir: join(dir, 'link/vms') });
      expect(scope.vmsDirs).toEqual([join(dir, 'link/vms'), realpathSync(join(dir, 'real/vms'))]);
      expect(scope.imagesDirs).toEqual([join(dir, 'none/images')]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

// ---------------------------------------------------------------------------------------------
// gc: apply, against the fake host, real files and a real process

describe('gc apply', () => {
  const cleanups: (() => void)[] = [];
  afterEach(() => {
    for (const c of cleanups.splice(0).reverse()) c();
  });

  /** A real process that looks like a Firecracker of vm D to /proc ("--api-sock X --id D"). */
  function strayProcess(apiSock: string, vmId: string): ChildProcess {
    const child = spawn('sh', ['-c', 'read x', '--api-sock', apiSock, '--id', vmId], { stdio: ['pipe', 'ignore', 'ignore'] });
    cleanups.push(() => child.kill('SIGKILL'));
    return child;
  }

  async function setup() {
    const dir = mkdtempSync(join(tmpdir(), 'bgt-gc-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const paths = { vmsDir: join(dir, 'state/vms'), imagesDir: join(dir, 'data/images'), vmSocketsDir: join(dir, 'run/vms') };
    for (const d of Object.values(paths)) mkdirSync(d, { recursive: true });
    const runner = new FakeRunner();
    const net = installFakeNet(runner);
    const disk = installFakeDisk(runner);
    const journal = new MemoryJournal();
    const vms: GcVm[] = [vm(A, 'running', 4242), vm(C, 'stopped')];
    const ctx: GcContext = { runner, journal, listVms: () => vms, paths, useSudo: false };

    // The running VM: TAP, rules, socket, all journaled.
    await runner.run(['ip', 'tuntap', 'add', 'dev', `bg${A}`, 'mode', 'tap']);
    await ensureNat(runner, { id: A, guestIp: '172.16.0.2', tap: `bg${A}` }, 'eth0');
    writeFileSync(join(paths.vmSocketsDir, `${A}.sock`), '');
    journal.record(A, 'tap', `bg${A}`);
    journal.record(A, 'nat', 'eth0', '172.16.0.2');
    journal.record(A, 'socket', join(paths.vmSocketsDir, `${A}.sock`));

    // Leftovers of vm D, unknown to banger: TAP, rules, a loop under vms/D with a mapper over it,
    // its socket and a live process.
    await runner.run(['ip', 'tuntap', 'add', 'dev', `bg${D}`, 'mode', 'tap']);
    await ensureNat(runner, { id: D, guestIp: '172.16.0.10', tap: `bg${D}` }, 'eth0');
    mkdirSync(join(paths.vmsDir, D));
    const cow = join(paths.vmsDir, D, 'cow.img');
    writeFileSync(cow, Buffer.alloc(1024 * 1024));
    const { stdout } = await runner.run(['losetup', '--find', '--show', cow]);
    const dev = stdout.trim();
    await runner.run(['dmsetup', 'create', `banger-${D}`], { input: `0 2048 linear ${dev} 0\n` });
    const sockD = join(paths.vmSocketsDir, `${D}.sock`);
    writeFileSync(sockD, '');
    const child = strayProcess(sockD, D);
    await until(() => readStartTime(child.pid!) !== null && isSameProcess(child.pid!, readStartTime(child.pid!)!, D));

    // A stopped VM whose TAP outlived a failed teardown.
    await runner.run(['ip', 'tuntap', 'add', 'dev', `bg${C}`, 'mode', 'tap']);
    journal.record(C, 'tap', `bg${C}`);
    return { dir, paths, runner, net, disk, journal, ctx, dev, child, sockD };
  }

  it('lists on a dry run and changes nothing; then removes every leftover and leaves the running VM alone; twice finds nothing', async () => {
    const h = await setup();
    const before = { taps: h.net.taps(), rules: h.net.rules.length, loops: [...h.disk.loops.keys()], dms: [...h.disk.dms.keys()] };

    const dry = await collectGarbage(h.ctx, true);
    expect(dry.items.map((i) => `${i.kind} ${i.handle}`)).toEqual([
      `process ${h.child.pid}`,
      `dm banger-${D}`,
      `loop ${h.dev}`,
      `nat -t filter -A FORWARD -i bg${D} -o eth0 -m comment --comment banger:${D} -j ACCEPT`,
      `nat -t filter -A FORWARD -i eth0 -o bg${D} -m conntrack --ctstate RELATED,ESTABLISHED -m comment --comment banger:${D} -j ACCEPT`,
      `nat -t nat -A POSTROUTING -s 172.16.0.10/32 -o eth0 -m comment --comment banger:${D} -j MASQUERADE`,
      `tap bg${D}`,
      `tap bg${C}`,
      `socket ${h.sockD}`,
    ]);
    expect(dry.items.every((i) => i.removed === false && i.error === undefined)).toBe(true);
    expect({ taps: h.net.taps(), rules: h.net.rules.length, loops: [...h.disk.loops.keys()], dms: [...h.disk.dms.keys()] }).toEqual(before);
    expect(existsSync(h.sockD)).toBe(true);
    expect(h.child.exitCode === null && h.child.signalCode === null).toBe(true);

    const res = await collectGarbage(h.ctx, false);
    expect(res.items.map((i) => [i.kind, i.removed, i.error])).toEqual(dry.items.map((i) => [i.kind, true, undefined]));
    expect(h.net.taps()).toEqual([`bg${A}`]);
    expect(h.net.rulesOf(D)).toEqual([]);
    expect(h.net.rulesOf(A)).toHaveLength(3);
    expect(h.disk.loops.size).toBe(0);
    expect(h.disk.dms.size).toBe(0);
    expect(existsSync(h.sockD)).toBe(false);
    expect(existsSync(join(h.paths.vmSocketsDir, `${A}.sock`))).toBe(true);
    await until(() => h.child.signalCode === 'SIGKILL');
    // The stopped VM's row went with its TAP; the running VM's rows stay.
    expect(h.journal.list(C)).toEqual([]);
    expect(h.journal.list(A).map((r) => r.kind)).toEqual(['tap', 'nat', 'socket']);

    expect((await collectGarbage(h.ctx, false)).items).toEqual([]);
  });

  it('reports a removal that fails, removes the rest, keeps the journal row until a later gc succeeds', async () => {
    const h = await setup();
    h.journal.record('ffffffffffff', 'tap', `bg${D}`);
    h.runner.inject({ prefix: `ip link del dev bg${D}`, nth: 1, exitCode: 2, stderr: 'RTNETLINK answers: Operation not permitted' });

    const res = await collectGarbage(h.ctx, false);
    const failed = res.items.filter((i) => i.error);
    expect(failed).toEqual([
      { kind: 'tap', handle: `bg${D}`, removed: false, error: expect.stringContaining('Operation not permitted') },
      { kind: 'journal', handle: `ffffffffffff tap bg${D}`, detail: 'a journal row of a VM that no longer exists', removed: false, error: `kept until tap bg${D} is removed` },
    ]);
    expect(res.items.filter((i) => i.removed)).toHaveLength(res.items.length - 2);
    expect(h.net.taps()).toEqual([`bg${A}`, `bg${D}`]);
    expect(h.journal.list('ffffffffffff')).toHaveLength(1);

    const again = await collectGarbage(h.ctx, false);
    expect(again.items.map((i) => [`${i.kind} ${i.handle}`, i.removed])).toEqual([
      [`tap bg${D}`, true],
      [`journal ffffffffffff tap bg${D}`, true],
    ]);
    expect(h.journal.list('ffffffffffff')).toEqual([]);
    expect((await collectGarbage(h.ctx, false)).items).toEqual([]);
  });

  it('refuses with the sudoers fix when sudo will not list what it needs', async () => {
    const runner = new FakeRunner();
    installFakeNet(runner);
    installFakeDisk(runner);
    runner.handle('losetup', () => fail(1, 'sudo: a password is required\n'));
    const dir = mkdtempSync(join(tmpdir(), 'bgt-gc-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const ctx: GcContext = { runner, journal: new MemoryJournal(), listVms: () => [], paths: { vmsDir: join(dir, 'vms'), imagesDir: join(dir, 'images'), vmSocketsDir: join(dir, 'sock') }, useSudo: true };
    await expect(collectGarbage(ctx, true)).rejects.toMatchObject({
      code: 'failed_precondition',
      message: expect.stringMatching(/^gc: listing loop devices: .*sudo: a password is required; install docs\/sudoers.md as \/etc\/sudoers.d\/banger/),
    });
  });

  it('finds no mapper devices on a host without device-mapper, instead of failing', async () => {
    const runner = new FakeRunner();
    installFakeNet(runner);
    installFakeDisk(runner, { hasDeviceMapper: false });
    const dir = mkdtempSync(join(tmpdir(), 'bgt-gc-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const ctx: GcContext = { runner, journal: new MemoryJournal(), listVms: () => [], paths: { vmsDir: join(dir, 'vms'), imagesDir: join(dir, 'images'), vmSocketsDir: join(dir, 'sock') }, useSudo: false };
    expect(await collectGarbage(ctx, true)).toEqual({ dryRun: true, items: [] });
  });
});

async function until(fn: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!fn()) {
    if (Date.now() > deadline) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 20));
  }
}
