// host.doctor and host.gc. Doctor runs every prerequisite check at once, each bounded, each
// answering ok/warn/fail with the exact fix. Gc is a pure plan (host inventory + VM records +
// journal -> what no VM owns) apart from the apply that removes it.
import { existsSync, readdirSync, realpathSync, rmSync } from 'node:fs';
import { access, constants as fsConstants, open, stat, statfs } from 'node:fs/promises';
import { basename, delimiter, dirname, isAbsolute, join, resolve, sep } from 'node:path';
import { FailedPreconditionError, HostCommandError, errorMessage, wrapError } from '../core/errors.js';
import type { Paths } from '../core/paths.js';
import type { Settings } from '../core/config.js';
import type { VmState } from '../core/models.js';
import type { Journal, ResourceKind, ResourceRecord, Runner } from '../core/ports.js';
import {
  TAP_NAME_PATTERN,
  RULE_COMMENT_PREFIX,
  parseIpRoutes,
  parsePool,
  poolCapacity,
  poolOverlapsRoutes,
  type AddressPool,
  type IpRoute,
  type TaggedRule,
} from '../core/net.js';
import { installRoot } from '../core/install-root.js';
import type { StoredVm } from '../store/store.js';
import { hasSnapshotTarget, isDmGoneError, listDm, removeDm } from '../host/dm.js';
import { detachLoop, listLoops, type LoopDevice } from '../host/loop.js';
import { deleteTap, listBangerTaps } from '../host/tap.js';
import { listBangerRules, removeRuleSpec } from '../host/nat.js';
import { readIpForward } from '../host/sysctl.js';
import { detectUplink } from '../host/uplink.js';
import { PRIVILEGED_TOOLS } from '../host/sudo-runner.js';
import type { StrategyChoice } from '../host/rootdisk.js';
import { findFirecrackerProcesses, PIDFILE_WRAPPER_SCRIPT, type FirecrackerProcess } from '../firecracker/proc.js';
import { killFirecracker } from '../firecracker/launcher.js';
import { FIRECRACKER_API_VERSION } from '../firecracker/types.js';
import type { DaemonDeps } from './daemon.js';
import type { KeyedLock } from './locks.js';
import type { VmRuntime } from './vm-runtime.js';

// ---------------------------------------------------------------------------------------------
// doctor

export type CheckStatus = 'ok' | 'warn' | 'fail';

export interface DoctorCheck {
  name: string;
  status: CheckStatus;
  message: string;
  /** The exact thing to do; present whenever status is not ok. */
  fix?: string;
}

export interface DoctorReport {
  checks: DoctorCheck[];
  /** The root disk strategy in force, null when it cannot be chosen. */
  strategy: 'dm' | 'copy' | null;
}

/** What doctor reads from the host besides running tools; replaceable in tests. */
export interface DoctorProbes {
  /** The executable a command resolves to: a path is checked as is, a name searched on PATH and then in extraDirs. */
  which(command: string, extraDirs?: readonly string[]): Promise<string | null>;
  /** Opens a device read-write and closes it again: null when that works, else the error code ("ENOENT", "EACCES"). */
  openDevice(path: string): Promise<string | null>;
  exists(path: string): Promise<boolean>;
  /** Bytes free to unprivileged users on the filesystem holding path (or its nearest existing parent). */
  freeSpace(path: string): Promise<{ freeBytes: number; device: number; probed: string }>;
}

export interface DoctorEnv {
  runner: Runner;
  probes: DoctorProbes;
  settings: Pick<Settings, 'firecracker' | 'rootfsStrategy' | 'netPool' | 'uplink'>;
  paths: Pick<Paths, 'stateDir' | 'dataDir'>;
  isRoot: boolean;
  /** How many /30s of the pool VMs hold. */
  usedAddresses: number;
  strategy: () => Promise<StrategyChoice>;
  /** Where the sudoers snippet is, for the sudo check's message. */
  sudoersDoc: string;
  /** Bound on each check; default 5 s. */
  timeoutMs?: number;
}

type CheckResult = Omit<DoctorCheck, 'name'>;

interface CheckDef {
  name: string;
  /** The fix shown when the check itself hangs or breaks. */
  fallbackFix: string;
  run: (env: DoctorEnv, toolTimeoutMs: number) => Promise<CheckResult>;
}

const DEFAULT_CHECK_TIMEOUT_MS = 5_000;
/** Under this much free space the disk check warns. */
export const LOW_DISK_BYTES = 2 * 1024 ** 3;
/** Where sudo looks for commands (its usual secure_path), besides the daemon's PATH. */
const SUDO_PATH = ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'];
const SUDOERS_INSTALL_FIX = 'install docs/sudoers.md as /etc/sudoers.d/banger';
const FIRECRACKER_RELEASES = 'https://github.com/firecracker-microvm/firecracker/releases';

const ok = (message: string): CheckResult => ({ status: 'ok', message });
const warn = (message: string, fix: string): CheckResult => ({ status: 'warn', message, fix });
const fail = (message: string, fix: string): CheckResult => ({ status: 'fail', message, fix });

function gib(bytes: number): string {
  return `${(bytes / 1024 ** 3).toFixed(1)} GiB`;
}

/** The last non-empty line of a tool's stderr (or stdout), for messages. */
function lastLine(text: string): string {
  return text.trim().split('\n').filter(Boolean).pop() ?? '';
}

/** A host tool that is not installed: the runner could not start it at all. */
export function isNotInstalledError(err: unknown): boolean {
  return err instanceof HostCommandError && err.exitCode === null && (err.cause as NodeJS.ErrnoException | undefined)?.code === 'ENOENT';
}

/** Tools banger runs besides iptables and Firecracker, with the Debian package that has each. */
const HOST_TOOLS: { tool: string; pkg: string; isPrivileged: boolean; onlyForDm?: boolean }[] = [
  { tool: 'ip', pkg: 'iproute2', isPrivileged: true },
  { tool: 'losetup', pkg: 'mount', isPrivileged: true, onlyForDm: true },
  { tool: 'blockdev', pkg: 'util-linux', isPrivileged: true, onlyForDm: true },
  { tool: 'dmsetup', pkg: 'dmsetup', isPrivileged: true, onlyForDm: true },
  { tool: 'sysctl', pkg: 'procps', isPrivileged: true },
  { tool: 'e2fsck', pkg: 'e2fsprogs', isPrivileged: true },
  { tool: 'resize2fs', pkg: 'e2fsprogs', isPrivileged: true },
  { tool: 'debugfs', pkg: 'e2fsprogs', isPrivileged: true },
  { tool: 'ssh', pkg: 'openssh-client', isPrivileged: false },
  { tool: 'ssh-keygen', pkg: 'openssh-client', isPrivileged: false },
];

/**
 * A harmless run of each privileged tool, to learn whether sudo lets it through without a
 * password. The sh probe has the launcher's exact shape, with /dev/null as the pid file.
 */
export const SUDO_PROBES: Record<(typeof PRIVILEGED_TOOLS)[number] | 'sh', string[]> = {
  losetup: ['losetup', '--version'],
  dmsetup: ['dmsetup', '--version'],
  blockdev: ['blockdev', '--version'],
  ip: ['ip', '-V'],
  iptables: ['iptables', '--version'],
  sysctl: ['sysctl', '--version'],
  e2fsck: ['e2fsck', '-V'],
  // No version option: without arguments it prints its usage and exits 1.
  resize2fs: ['resize2fs'],
  debugfs: ['debugfs', '-V'],
  kill: ['kill', '-l'],
  chown: ['chown', '--version'],
  rm: ['rm', '--version'],
  sh: ['sh', '-c', PIDFILE_WRAPPER_SCRIPT, '/dev/null', 'true'],
};

// sudo's own refusals: "sudo: a password is required", "sudo: a terminal is required to read the
// password", "Sorry, user bob is not allowed to execute '/usr/sbin/losetup --version' as root on h.",
// "sudo: losetup: command not found". Anything else came from the tool, so sudo let it run.
export function isSudoRefusal(exitCode: number, stderr: string): boolean {
  return exitCode !== 0 && /^(sudo: |Sorry, user )/m.test(stderr);
}

/** sudo's refusal inside another message ("ip -j route show exited 1: sudo: a password is required"). */
const SUDO_REFUSED = /sudo: a (password|terminal) is required|Sorry, user \S+ is not allowed/;

function sudoersFix(env: DoctorEnv): string {
  return `${SUDOERS_INSTALL_FIX} (the snippet is in ${env.sudoersDoc})`;
}

async function resolveStrategy(env: DoctorEnv): Promise<StrategyChoice | null> {
  try {
    return await env.strategy();
  } catch {
    return null;
  }
}

export const DOCTOR_CHECKS: CheckDef[] = [
  {
    name: 'kvm',
    fallbackFix: 'check /dev/kvm by hand: ls -l /dev/kvm',
    run: async (env) => {
      const code = await env.probes.openDevice('/dev/kvm');
      if (code === null) return ok('/dev/kvm is readable and writable');
      if (code === 'ENOENT' || code === 'ENXIO' || code === 'ENODEV') {
        return fail(
          '/dev/kvm does not exist: the kernel has no KVM module loaded, virtualization is off in the firmware, or this machine is a VM without nested virtualization',
          'sudo modprobe kvm_intel (or kvm_amd), and turn on VT-x/AMD-V in the firmware settings',
        );
      }
      if (code === 'EACCES' || code === 'EPERM') {
        const fix = 'sudo usermod -aG kvm "$USER", then log in again (or restart bangerd)';
        if (env.isRoot) return fail(`/dev/kvm cannot be opened read-write (${code}), even as root`, 'check the device node: ls -l /dev/kvm; sudo chmod 660 /dev/kvm');
        return warn(`/dev/kvm is not readable and writable by bangerd's user (${code}); Firecracker runs as root through sudo, so VMs still start`, fix);
      }
      return fail(`opening /dev/kvm failed: ${code}`, 'look for KVM errors in the kernel log: sudo dmesg | grep -i kvm');
    },
  },
  {
    name: 'firecracker',
    fallbackFix: `run it by hand: firecracker --version; install it from ${FIRECRACKER_RELEASES}`,
    run: async (env, toolTimeoutMs) => {
      const bin = env.settings.firecracker;
      const installFix = `install Firecracker from ${FIRECRACKER_RELEASES} (the firecracker binary onto PATH), or set BANGER_FIRECRACKER to its path`;
      const path = await env.probes.which(bin);
      if (path === null) return fail(`${bin} was not found${bin.includes('/') ? '' : ' on PATH'}`, installFix);
      // Not root, the launcher runs `sudo sh -c ... firecracker`: sh finds it on sudo's secure_path.
      if (!env.isRoot && !bin.includes('/')) {
        const forSudo = await Promise.all(SUDO_PATH.map((d) => env.probes.which(join(d, bin))));
        if (forSudo.every((p) => p === null)) {
          return fail(`${path} is on PATH, but not on sudo's secure_path (${SUDO_PATH.join(':')}), where the launcher looks for it`, `set BANGER_FIRECRACKER=${path}`);
        }
      }
      let res;
      try {
        res = await env.runner.run([bin, '--version'], { check: false, timeoutMs: toolTimeoutMs });
      } catch (err) {
        return fail(`${path} could not be run: ${errorMessage(err)}`, `make it executable (chmod +x ${path}), or ${installFix}`);
      }
      // "Firecracker v1.7.0" followed by a blank line.
      const version = /v?(\d+)\.(\d+)\.(\d+)/.exec(res.stdout);
      if (res.exitCode !== 0 || !version) {
        const why = res.exitCode !== 0 ? `exited ${res.exitCode}${lastLine(res.stderr) ? `: ${lastLine(res.stderr)}` : ''}` : 'printed no version';
        return warn(`${path} is there, but \`${bin} --version\` ${why}`, `check that ${path} is a Firecracker release binary for this machine, or ${installFix}`);
      }
      const found = `${version[1]}.${version[2]}.${version[3]}`;
      const wantedMajor = FIRECRACKER_API_VERSION.split('.')[0];
      if (version[1] !== wantedMajor) {
        return warn(`${path} is Firecracker v${found}; banger speaks the v${FIRECRACKER_API_VERSION} API`, `install a v${wantedMajor}.x release from ${FIRECRACKER_RELEASES}`);
      }
      return ok(`${path}, Firecracker v${found}`);
    },
  },
  {
    name: 'device-mapper',
    fallbackFix: 'check by hand: sudo dmsetup targets',
    run: async (env) => {
      const hasControl = await env.probes.exists('/dev/mapper/control');
      const hasSnapshot = hasControl && (await hasSnapshotTarget(env.runner));
      if (hasSnapshot) return ok('/dev/mapper/control exists and `dmsetup targets` lists snapshot');
      const why = hasControl ? '`dmsetup targets` does not list snapshot' : '/dev/mapper/control does not exist';
      const fix = 'sudo modprobe dm_mod dm_snapshot';
      if (env.settings.rootfsStrategy === 'copy') return ok(`not available (${why}); not needed with BANGER_ROOTFS_STRATEGY=copy`);
      if (env.settings.rootfsStrategy === 'dm') return fail(`${why}, and BANGER_ROOTFS_STRATEGY=dm needs it`, `${fix}, or set BANGER_ROOTFS_STRATEGY=copy`);
      return warn(`${why}: root disks are full copies of the image (slower to create, more disk)`, fix);
    },
  },
  {
    name: 'root disk',
    fallbackFix: 'check by hand: sudo dmsetup targets',
    run: async (env) => {
      try {
        const choice = await env.strategy();
        return ok(`${choice.strategy} (${choice.reason})`);
      } catch (err) {
        return fail(errorMessage(err), 'sudo modprobe dm_mod dm_snapshot, or set BANGER_ROOTFS_STRATEGY=copy');
      }
    },
  },
  {
    name: 'loop',
    fallbackFix: 'check by hand: ls -l /dev/loop-control',
    run: async (env) => {
      if (await env.probes.exists('/dev/loop-control')) return ok('/dev/loop-control exists');
      const choice = await resolveStrategy(env);
      const message = '/dev/loop-control does not exist (no loop device driver)';
      if (choice?.strategy === 'copy') return warn(`${message}; the copy root disk strategy does not need it`, 'sudo modprobe loop');
      return fail(`${message}; the dm root disk strategy needs loop devices`, 'sudo modprobe loop');
    },
  },
  {
    name: 'tun',
    fallbackFix: 'check by hand: ls -l /dev/net/tun',
    run: async (env) =>
      (await env.probes.exists('/dev/net/tun'))
        ? ok('/dev/net/tun exists')
        : fail('/dev/net/tun does not exist: VMs cannot get a TAP device', 'sudo modprobe tun'),
  },
  {
    name: 'iptables',
    fallbackFix: 'run it by hand: iptables --version',
    run: async (env, toolTimeoutMs) => {
      const installFix = 'install iptables (Debian/Ubuntu: sudo apt-get install iptables)';
      const path = await env.probes.which('iptables', env.isRoot ? [] : SUDO_PATH);
      if (path === null) return fail('iptables is not installed: NAT needs it (VMs made with --no-nat do not)', installFix);
      let res;
      try {
        res = await env.runner.run(['iptables', '--version'], { check: false, timeoutMs: toolTimeoutMs });
      } catch (err) {
        return fail(`iptables could not be run: ${errorMessage(err)}`, installFix);
      }
      // "iptables v1.8.9 (nf_tables)", "iptables v1.8.9 (legacy)"; before 1.8 there was only legacy.
      const m = /iptables v(\S+)(?: \(([^)]+)\))?/.exec(res.stdout + res.stderr);
      if (res.exitCode !== 0 || !m) {
        return warn(`\`iptables --version\` exited ${res.exitCode}: ${lastLine(res.stderr || res.stdout)}`, `run iptables --version by hand; ${installFix}`);
      }
      const backend = m[2] === 'nf_tables' ? 'nft' : 'legacy';
      return ok(`${path}, v${m[1]} (${backend} backend)`);
    },
  },
  {
    name: 'host tools',
    fallbackFix: 'check that each is on PATH: command -v ip losetup dmsetup e2fsck resize2fs debugfs ssh ssh-keygen',
    run: async (env) => {
      const found = await Promise.all(
        HOST_TOOLS.map(async (t) => ({ ...t, path: await env.probes.which(t.tool, t.isPrivileged && !env.isRoot ? SUDO_PATH : []) })),
      );
      const missing = found.filter((t) => t.path === null);
      if (missing.length === 0) return ok(`all on PATH: ${HOST_TOOLS.map((t) => t.tool).join(', ')}`);
      const pkgs = [...new Set(missing.map((t) => t.pkg))].join(' ');
      const fix = `install them (Debian/Ubuntu: sudo apt-get install ${pkgs})`;
      const message = `not on PATH: ${missing.map((t) => t.tool).join(', ')}`;
      const choice = missing.every((t) => t.onlyForDm) ? await resolveStrategy(env) : null;
      if (choice?.strategy === 'copy') return warn(`${message} (only the dm root disk strategy uses them)`, fix);
      return fail(message, fix);
    },
  },
  {
    name: 'sudo',
    fallbackFix: `${SUDOERS_INSTALL_FIX}; then check: sudo -n losetup --version`,
    run: async (env, toolTimeoutMs) => {
      if (env.isRoot) return ok('bangerd runs as root: no sudo needed');
      const fix = sudoersFix(env);
      if ((await env.probes.which('sudo', SUDO_PATH)) === null) return fail('bangerd is not root and sudo is not installed', `install sudo, then ${fix}`);
      const probe = async (argv: string[]) => {
        const res = await env.runner.run(['sudo', '-n', ...argv], { check: false, timeoutMs: toolTimeoutMs });
        return !isSudoRefusal(res.exitCode, res.stderr);
      };
      if (await probe(['true'])) return ok('passwordless sudo works for every command');
      const results = await Promise.all(Object.entries(SUDO_PROBES).map(async ([tool, argv]) => ({ tool, isAllowed: await probe(argv) })));
      const refused = results.filter((r) => !r.isAllowed).map((r) => r.tool);
      if (refused.length === 0) return ok(`passwordless sudo works for ${results.map((r) => r.tool).join(', ')}`);
      return fail(`bangerd is not root, and sudo -n asks for a password (or refuses) for: ${refused.join(', ')}`, fix);
    },
  },
  {
    name: 'ip_forward',
    fallbackFix: 'check by hand: sysctl net.ipv4.ip_forward',
    run: async (env) => {
      try {
        if (await readIpForward(env.runner)) return ok('net.ipv4.ip_forward = 1');
        return warn('net.ipv4.ip_forward = 0; banger sets it to 1 when it starts the first VM with NAT', 'nothing to do, or set it now: sudo sysctl -w net.ipv4.ip_forward=1');
      } catch (err) {
        return warn(`could not read net.ipv4.ip_forward: ${errorMessage(err)}`, 'check by hand: sysctl net.ipv4.ip_forward');
      }
    },
  },
  {
    name: 'uplink',
    fallbackFix: 'check by hand: ip route show default',
    run: async (env) => {
      const override = env.settings.uplink;
      try {
        const dev = await detectUplink(env.runner, override ?? undefined);
        return ok(override ? `${dev} (BANGER_UPLINK)` : `${dev} (the default route's interface)`);
      } catch (err) {
        const fix = override
          ? 'set BANGER_UPLINK to an interface listed by `ip link`, or unset it to use the default route\'s; VMs made with --no-nat work meanwhile'
          : 'set BANGER_UPLINK to the interface that reaches the outside, or create VMs with --no-nat';
        return warn(`NAT has no uplink: ${errorMessage(err)}`, fix);
      }
    },
  },
  {
    name: 'address pool',
    fallbackFix: 'check by hand: ip route show',
    run: async (env) => {
      let pool: AddressPool;
      try {
        pool = parsePool(env.settings.netPool);
      } catch (err) {
        return fail(errorMessage(err), 'set BANGER_NET_POOL to an IPv4 CIDR such as 172.16.0.0/16');
      }
      const routes = parseIpRoutes((await env.runner.run(['ip', '-j', 'route', 'show'])).stdout);
      const overlaps = poolOverlapsRoutes(pool, routes);
      if (overlaps.length > 0) {
        const named = overlaps.map((r) => `${r.dst}${r.dev ? ` dev ${r.dev}` : ''}`).join(', ');
        const other = suggestPool(routes);
        return fail(
          `pool ${pool.cidr} overlaps host route ${named}`,
          other ? `set BANGER_NET_POOL=${other} (no host route uses it)` : 'set BANGER_NET_POOL to a range that no host route uses',
        );
      }
      const capacity = poolCapacity(pool);
      const free = capacity - env.usedAddresses;
      if (free <= 0) {
        return fail(`pool ${pool.cidr} is exhausted: all ${capacity} /30s are taken`, 'remove a VM with banger vm rm, or set BANGER_NET_POOL to a larger range');
      }
      return ok(`${pool.cidr}: ${free} of ${capacity} /30s free, no overlap with host routes`);
    },
  },
  diskCheck('disk space (state)', 'stateDir', 'XDG_STATE_HOME'),
  diskCheck('disk space (data)', 'dataDir', 'XDG_DATA_HOME'),
];

function diskCheck(name: string, dir: 'stateDir' | 'dataDir', variable: string): CheckDef {
  return {
    name,
    fallbackFix: `check by hand: df -h`,
    run: async (env) => {
      const where = env.paths[dir];
      const space = await env.probes.freeSpace(where);
      const message = `${gib(space.freeBytes)} free on the filesystem of ${where}${space.probed !== where ? ` (measured at ${space.probed})` : ''}`;
      if (space.freeBytes < LOW_DISK_BYTES) {
        return warn(`${message}; VM disks and images need more than ${gib(LOW_DISK_BYTES)}`, `free space on that filesystem (df -h ${space.probed}), or set ${variable} to a directory on a larger one`);
      }
      return ok(message);
    },
  };
}

/** A private /16 (or /24) that no host route touches, for the pool fix. */
export function suggestPool(routes: IpRoute[]): string | null {
  for (const cidr of ['10.213.0.0/16', '172.31.0.0/16', '10.123.0.0/16', '192.168.213.0/24']) {
    if (poolOverlapsRoutes(parsePool(cidr), routes).length === 0) return cidr;
  }
  return null;
}

const TIMED_OUT = Symbol('timed out');

function withTimeout<T>(ms: number, work: Promise<T>): Promise<T | typeof TIMED_OUT> {
  let timer: NodeJS.Timeout;
  const timeout = new Promise<typeof TIMED_OUT>((r) => (timer = setTimeout(() => r(TIMED_OUT), ms)));
  return Promise.race([work, timeout]).finally(() => clearTimeout(timer));
}

/** Runs every check concurrently, each bounded: a hung tool fails its own check, not doctor. */
export async function runDoctor(env: DoctorEnv, checks: CheckDef[] = DOCTOR_CHECKS): Promise<DoctorReport> {
  const bound = env.timeoutMs ?? DEFAULT_CHECK_TIMEOUT_MS;
  // Tools get a little less than the check, so that their own timeout (which kills them) fires first.
  const toolTimeoutMs = Math.max(100, bound - 250);
  const results = await Promise.all(
    checks.map(async (c): Promise<DoctorCheck> => {
      try {
        const r = await withTimeout(bound, c.run(env, toolTimeoutMs));
        if (r === TIMED_OUT) return { name: c.name, status: 'fail', message: `no answer within ${bound / 1000} s (a host tool hung)`, fix: c.fallbackFix };
        // A tool that sudo would not run: the fix is the sudoers snippet, whatever the check.
        if (r.status !== 'ok' && SUDO_REFUSED.test(r.message)) return { name: c.name, ...r, fix: sudoersFix(env) };
        return { name: c.name, ...r };
      } catch (err) {
        const message = errorMessage(err);
        return { name: c.name, status: 'fail', message, fix: SUDO_REFUSED.test(message) ? sudoersFix(env) : c.fallbackFix };
      }
    }),
  );
  const choice = await withTimeout(bound, resolveStrategy(env));
  return { checks: results, strategy: choice === TIMED_OUT || choice === null ? null : choice.strategy };
}

/** The real host behind DoctorProbes. */
export const hostProbes: DoctorProbes = {
  async which(command, extraDirs = []) {
    const isExecutableFile = async (p: string) => {
      try {
        await access(p, fsConstants.X_OK);
        return (await stat(p)).isFile();
      } catch {
        return false;
      }
    };
    if (command.includes('/')) return (await isExecutableFile(command)) ? resolve(command) : null;
    const dirs = [...(process.env.PATH ?? '').split(delimiter).filter(Boolean), ...extraDirs];
    for (const d of dirs) {
      const p = join(d, command);
      if (await isExecutableFile(p)) return p;
    }
    return null;
  },
  async openDevice(path) {
    try {
      const fh = await open(path, fsConstants.O_RDWR | fsConstants.O_NONBLOCK);
      await fh.close();
      return null;
    } catch (err) {
      return (err as NodeJS.ErrnoException).code ?? errorMessage(err);
    }
  },
  async exists(path) {
    try {
      await stat(path);
      return true;
    } catch {
      return false;
    }
  },
  async freeSpace(path) {
    let probed = resolve(path);
    while (!existsSync(probed) && dirname(probed) !== probed) probed = dirname(probed);
    const [fs, st] = await Promise.all([statfs(probed), stat(probed)]);
    return { freeBytes: fs.bavail * fs.bsize, device: st.dev, probed };
  },
};

function sudoersDocPath(): string {
  try {
    return join(installRoot(), 'docs', 'sudoers.md');
  } catch {
    return 'docs/sudoers.md in banger\'s source';
  }
}

export async function doctor(deps: DaemonDeps, runtime: VmRuntime): Promise<DoctorReport> {
  return runDoctor({
    runner: deps.runner,
    probes: hostProbes,
    settings: deps.settings,
    paths: deps.paths,
    isRoot: runtime.options.uid === 0,
    usedAddresses: deps.store.usedNetIndexes().length,
    strategy: () => runtime.strategy(),
    sudoersDoc: sudoersDocPath(),
  });
}

// ---------------------------------------------------------------------------------------------
// gc: the plan

/** States in which a VM holds (or is about to hold) host objects that gc must leave alone. */
const ACTIVE_STATES: ReadonlySet<VmState> = new Set<VmState>(['creating', 'starting', 'running', 'stopping']);

export type GcVm = Pick<StoredVm, 'id' | 'state' | 'tap' | 'pid'>;

/** banger's objects as found on the host. */
export interface HostInventory {
  loops: Pick<LoopDevice, 'name' | 'backingFile' | 'isBackingFileDeleted'>[];
  /** Every device-mapper name (`dmsetup ls`). */
  mappers: string[];
  /** Interfaces named bg<hex>. */
  taps: string[];
  /** iptables rules tagged banger:<id>. */
  rules: TaggedRule[];
  /** Paths of the *.sock files in the API socket directory. */
  sockets: string[];
  processes: FirecrackerProcess[];
  /** Journaled files that exist. */
  files: string[];
}

/** Where banger's files are; each with its real path too, since the kernel prints resolved paths. */
export interface GcScope {
  vmsDirs: string[];
  imagesDirs: string[];
  socketsDirs: string[];
}

export type OrphanKind = 'process' | 'dm' | 'loop' | 'nat' | 'tap' | 'socket' | 'file' | 'journal';

/** A host object (or journal row) that no VM owns. */
export interface Orphan {
  kind: OrphanKind;
  handle: string;
  detail?: string;
  /** The VM id it is named after, when its name says. */
  vmId: string | null;
  process?: { pid: number; startTime: string };
  /** [table, chain, ...args] of a rule. */
  rule?: string[];
  /** The row a journal orphan forgets. */
  record?: ResourceRecord;
  /** Rows of VMs that are not active, forgotten once this object is gone. */
  settles: ResourceRecord[];
}

const MAPPER_NAME = /^banger-([0-9a-f]+)(-origin)?$/;
const SOCKET_NAME = /^([0-9a-f]+)\.sock$/;
const KIND_ORDER: OrphanKind[] = ['process', 'dm', 'loop', 'nat', 'tap', 'socket', 'file', 'journal'];

const rowKey = (kind: ResourceKind, handle: string) => `${kind}\0${handle}`;
const sameRow = (a: ResourceRecord, b: ResourceRecord) => a.vmId === b.vmId && a.kind === b.kind && a.handle === b.handle;

function within(file: string, dirs: string[]): string | null {
  for (const d of dirs) if (file.startsWith(d.endsWith(sep) ? d : d + sep)) return file.slice(d.length).replace(/^\/+/, '');
  return null;
}

/** `-t nat -A POSTROUTING -s 172.16.0.2/32 ... -j MASQUERADE`, as the user would type it. */
export function ruleText(spec: string[]): string {
  const [table, chain, ...args] = spec;
  return ['-t', table, '-A', chain, ...args].join(' ');
}

/**
 * What no VM owns. A VM owns what it holds while it is creating, starting, running or stopping:
 * what its journal rows name, and what is named after its id. Everything else with banger's names
 * is an orphan: loops on files under vms/ or images/, banger-<id> mapper devices, bg<id> TAPs,
 * rules tagged banger:<id>, <id>.sock API sockets, Firecracker processes of this installation.
 * Journal rows of VMs that no longer exist are orphans too, forgotten after their handles go.
 */
export function planGc(inv: HostInventory, vms: GcVm[], journal: ResourceRecord[], scope: GcScope): Orphan[] {
  const vmById = new Map(vms.map((v) => [v.id, v]));
  const isActive = (id: string | null) => id !== null && ACTIVE_STATES.has(vmById.get(id)?.state as VmState);
  const owned = new Set(journal.filter((r) => isActive(r.vmId)).map((r) => rowKey(r.kind, r.handle)));
  const loose = journal.filter((r) => !isActive(r.vmId));
  const settling = (kind: ResourceKind, handle: string) => loose.filter((r) => r.kind === kind && r.handle === handle);
  const activeTaps = new Set(vms.filter((v) => isActive(v.id)).map((v) => v.tap));
  // A start attaches the image's loop a moment before it journals it.
  const isAnyStarting = vms.some((v) => v.state === 'starting');
  const knownIds = new Set([...vmById.keys(), ...journal.map((r) => r.vmId)]);
  const out: Orphan[] = [];

  for (const p of inv.processes) {
    // Only this installation's: its API socket is ours, or its id is one we know.
    const isOurs = knownIds.has(p.vmId) || scope.socketsDirs.includes(dirname(resolve(p.apiSock)));
    if (!isOurs) continue;
    const vm = vmById.get(p.vmId);
    if (vm && isActive(vm.id)) {
      // A second Firecracker for a running VM (not its recorded pid) is a stray.
      const isStray = vm.state === 'running' && vm.pid !== null && vm.pid !== p.pid && !owned.has(rowKey('process', `${p.pid}:${p.startTime}`));
      if (!isStray) continue;
    }
    out.push({
      kind: 'process',
      handle: String(p.pid),
      detail: `firecracker --id ${p.vmId} --api-sock ${p.apiSock}`,
      vmId: p.vmId,
      process: { pid: p.pid, startTime: p.startTime },
      settles: loose.filter((r) => r.kind === 'process' && r.vmId === p.vmId && r.handle.startsWith(`${p.pid}:`)),
    });
  }

  const mappers: Orphan[] = [];
  for (const name of inv.mappers) {
    const m = MAPPER_NAME.exec(name);
    if (!m || isActive(m[1]) || owned.has(rowKey('dm', name))) continue;
    mappers.push({ kind: 'dm', handle: name, vmId: m[1], settles: settling('dm', name) });
  }
  // A snapshot holds its origin open: snapshots go first.
  mappers.sort((a, b) => Number(a.handle.endsWith('-origin')) - Number(b.handle.endsWith('-origin')));
  out.push(...mappers);

  for (const l of inv.loops) {
    const file = resolve(l.backingFile);
    const underVms = within(file, scope.vmsDirs);
    const underImages = within(file, scope.imagesDirs);
    if (underVms === null && underImages === null) continue;
    if (owned.has(rowKey('loop', l.name))) continue;
    const vmId = underVms !== null && underVms.includes('/') ? underVms.split('/')[0] : null;
    if (vmId !== null && isActive(vmId)) continue;
    if (underVms === null && isAnyStarting) continue;
    out.push({
      kind: 'loop',
      handle: l.name,
      detail: `${l.backingFile}${l.isBackingFileDeleted ? ' (deleted)' : ''}`,
      vmId,
      settles: settling('loop', l.name),
    });
  }

  for (const r of inv.rules) {
    if (isActive(r.vmId)) continue;
    out.push({
      kind: 'nat',
      handle: ruleText(r.spec),
      detail: `${RULE_COMMENT_PREFIX}${r.vmId}`,
      vmId: r.vmId,
      rule: r.spec,
      settles: loose.filter((x) => x.kind === 'nat' && x.vmId === r.vmId),
    });
  }

  for (const tap of inv.taps) {
    if (!TAP_NAME_PATTERN.test(tap)) continue;
    const vmId = tap.slice(2);
    if (isActive(vmId) || activeTaps.has(tap) || owned.has(rowKey('tap', tap))) continue;
    out.push({ kind: 'tap', handle: tap, vmId, settles: settling('tap', tap) });
  }

  for (const sock of inv.sockets) {
    const m = SOCKET_NAME.exec(basename(sock));
    if (!m || isActive(m[1]) || owned.has(rowKey('socket', sock))) continue;
    out.push({ kind: 'socket', handle: sock, vmId: m[1], settles: settling('socket', sock) });
  }

  // Rows of VMs that no longer exist: their files under vms/ go, then every row is forgotten.
  const existingFiles = new Set(inv.files);
  for (const r of journal) {
    if (vmById.has(r.vmId)) continue;
    if (r.kind === 'file' && existingFiles.has(r.handle) && within(resolve(r.handle), scope.vmsDirs) !== null) {
      const seen = out.find((o) => o.kind === 'file' && o.handle === r.handle);
      if (seen) seen.settles.push(r);
      else out.push({ kind: 'file', handle: r.handle, vmId: r.vmId, settles: [r] });
    }
    out.push({ kind: 'journal', handle: `${r.vmId} ${r.kind} ${r.handle}`, detail: 'a journal row of a VM that no longer exists', vmId: r.vmId, record: r, settles: [] });
  }

  return out.map((o, i) => ({ o, i })).sort((a, b) => KIND_ORDER.indexOf(a.o.kind) - KIND_ORDER.indexOf(b.o.kind) || a.i - b.i).map((x) => x.o);
}

// ---------------------------------------------------------------------------------------------
// gc: inventory and apply

export interface GcItem {
  kind: OrphanKind;
  handle: string;
  detail?: string;
  removed: boolean;
  error?: string;
}

export interface GcReport {
  dryRun: boolean;
  items: GcItem[];
}

export interface GcContext {
  runner: Runner;
  journal: Journal;
  listVms: () => GcVm[];
  paths: Pick<Paths, 'vmsDir' | 'imagesDir' | 'vmSocketsDir'>;
  /** Kill and remove through sudo (the daemon is not root). */
  useSudo: boolean;
  /** Firecracker processes; /proc by default. */
  listProcesses?: () => FirecrackerProcess[];
}

function withRealPaths(dir: string): string[] {
  const abs = resolve(dir);
  try {
    const real = realpathSync(abs);
    return real === abs ? [abs] : [abs, real];
  } catch {
    return [abs];
  }
}

export function gcScope(paths: GcContext['paths']): GcScope {
  return { vmsDirs: withRealPaths(paths.vmsDir), imagesDirs: withRealPaths(paths.imagesDir), socketsDirs: withRealPaths(paths.vmSocketsDir) };
}

/** A listing step that treats "the tool is not installed" as "there is nothing of that kind". */
async function listing<T>(what: string, run: () => Promise<T[]>, isNone: (err: unknown) => boolean = () => false): Promise<T[]> {
  try {
    return await run();
  } catch (err) {
    if (isNotInstalledError(err) || isNone(err)) return [];
    if (SUDO_REFUSED.test(errorMessage(err))) {
      throw new FailedPreconditionError(`gc: listing ${what}: ${errorMessage(err)}; ${SUDOERS_INSTALL_FIX} (see banger doctor)`, { cause: err });
    }
    throw wrapError(`gc: listing ${what}`, err);
  }
}

export async function takeInventory(ctx: GcContext): Promise<HostInventory> {
  const { runner } = ctx;
  const [loops, mappers, taps, rules] = await Promise.all([
    listing('loop devices', () => listLoops(runner)),
    // Without a device-mapper driver there are no mapper devices.
    listing('mapper devices', async () => (await listDm(runner)).map((d) => d.name), isDmGoneError),
    listing('TAP devices', () => listBangerTaps(runner)),
    listing('iptables rules', () => listBangerRules(runner)),
  ]);
  let sockets: string[] = [];
  try {
    sockets = readdirSync(ctx.paths.vmSocketsDir)
      .filter((n) => n.endsWith('.sock'))
      .map((n) => join(ctx.paths.vmSocketsDir, n));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  const files = ctx.journal
    .listAll()
    .filter((r) => r.kind === 'file' && isAbsolute(r.handle) && existsSync(r.handle))
    .map((r) => r.handle);
  const processes = (ctx.listProcesses ?? (() => findFirecrackerProcesses()))();
  return { loops, mappers, taps, rules, sockets, processes, files };
}

/** Removes a file that may belong to root (made by Firecracker under sudo); gone already is fine. */
async function removeFile(ctx: GcContext, path: string): Promise<void> {
  try {
    rmSync(path, { force: true });
  } catch (err) {
    if (!ctx.useSudo) throw err;
    await ctx.runner.run(['rm', '-f', '--', path]);
  }
}

async function removeOrphan(ctx: GcContext, o: Orphan): Promise<void> {
  switch (o.kind) {
    case 'process':
      await killFirecracker({ runner: ctx.runner, pid: o.process!.pid, startTime: o.process!.startTime, vmId: o.vmId!, useSudo: ctx.useSudo });
      return;
    case 'dm':
      await removeDm(ctx.runner, o.handle);
      return;
    case 'loop':
      await detachLoop(ctx.runner, o.handle);
      return;
    case 'nat':
      await removeRuleSpec(ctx.runner, o.rule!);
      return;
    case 'tap':
      await deleteTap(ctx.runner, o.handle);
      return;
    case 'socket':
    case 'file':
      await removeFile(ctx, o.handle);
      return;
    case 'journal':
      ctx.journal.forget(o.record!.vmId, o.record!.kind, o.record!.handle);
      return;
  }
}

/**
 * Removes the orphans in plan order (processes first: they hold the rest), every one even when
 * one fails. Journal rows are forgotten only once every object that settles them is gone.
 */
export async function applyGc(ctx: GcContext, orphans: Orphan[], dryRun: boolean): Promise<GcItem[]> {
  const item = (o: Orphan): GcItem => ({ kind: o.kind, handle: o.handle, ...(o.detail ? { detail: o.detail } : {}), removed: false });
  if (dryRun) return orphans.map(item);
  const failed: Orphan[] = [];
  const items: GcItem[] = [];
  const blockerOf = (r: ResourceRecord) => failed.find((f) => f.settles.some((s) => sameRow(s, r)));
  for (const o of orphans) {
    const it = item(o);
    items.push(it);
    if (o.kind === 'journal') {
      const blocker = blockerOf(o.record!);
      if (blocker) {
        it.error = `kept until ${blocker.kind} ${blocker.handle} is removed`;
        continue;
      }
    }
    try {
      await removeOrphan(ctx, o);
      it.removed = true;
    } catch (err) {
      failed.push(o);
      it.error = errorMessage(err);
    }
  }
  // Rows of existing VMs that are not active: their handles are gone now.
  for (const o of orphans) {
    if (failed.includes(o)) continue;
    for (const r of o.settles) if (!blockerOf(r)) ctx.journal.forget(r.vmId, r.kind, r.handle);
  }
  return items;
}

/** Inventory, plan, apply. The VM list and journal are read after the inventory, so that a VM that started meanwhile owns what it made. */
export async function collectGarbage(ctx: GcContext, dryRun: boolean): Promise<GcReport> {
  const inventory = await takeInventory(ctx);
  const orphans = planGc(inventory, ctx.listVms(), ctx.journal.listAll(), gcScope(ctx.paths));
  return { dryRun, items: await applyGc(ctx, orphans, dryRun) };
}

/** Runs fn holding the lock of every VM, so that no operation is half-way while gc decides. */
async function withVmLocks<T>(locks: KeyedLock | undefined, ids: string[], fn: () => Promise<T>): Promise<T> {
  if (!locks || ids.length === 0) return fn();
  const [first, ...rest] = ids;
  return locks.run(first, () => withVmLocks(locks, rest, fn));
}

export async function gc(deps: DaemonDeps, runtime: VmRuntime, dryRun: boolean): Promise<GcReport> {
  const ids = deps.store
    .listVms()
    .map((v) => v.id)
    .sort();
  const report = await withVmLocks(deps.locks, ids, () =>
    collectGarbage(
      {
        runner: deps.runner,
        journal: deps.store,
        listVms: () => deps.store.listVms(),
        paths: deps.paths,
        useSudo: runtime.options.useSudo,
      },
      dryRun,
    ),
  );
  for (const it of report.items) {
    if (it.error) deps.log.warn({ gc: it }, `gc could not remove ${it.kind} ${it.handle}`);
    else if (!dryRun) deps.log.info({ gc: it }, `gc removed ${it.kind} ${it.handle}`);
  }
  return report;
}
