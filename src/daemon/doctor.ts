// host.doctor: every prerequisite checked at once, each bounded, each answering ok/warn/fail
// with the exact fix.
import { existsSync } from 'node:fs';
import { access, constants as fsConstants, open, stat, statfs } from 'node:fs/promises';
import { delimiter, dirname, join, resolve } from 'node:path';
import { HostCommandError, errorMessage } from '../core/errors.js';
import type { Paths } from '../core/paths.js';
import type { Settings } from '../core/config.js';
import type { Runner } from '../core/ports.js';
import { parseIpRoutes, parsePool, poolCapacity, poolOverlapsRoutes, type AddressPool, type IpRoute } from '../core/net.js';
import { installRoot } from '../core/install-root.js';
import { hasSnapshotTarget } from '../host/dm.js';
import { readIpForward } from '../host/sysctl.js';
import { detectUplink } from '../host/uplink.js';
import { PRIVILEGED_TOOLS } from '../host/sudo-runner.js';
import type { StrategyChoice } from '../host/rootdisk.js';
import { PIDFILE_WRAPPER_SCRIPT } from '../firecracker/proc.js';
import { FIRECRACKER_API_VERSION } from '../firecracker/types.js';
import type { DaemonDeps } from './daemon.js';
import type { VmRuntime } from './vm-runtime.js';


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
export const SUDOERS_INSTALL_FIX = 'install docs/sudoers.md as /etc/sudoers.d/banger';
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
export const SUDO_REFUSED = /sudo: a (password|terminal) is required|Sorry, user \S+ is not allowed/;

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
