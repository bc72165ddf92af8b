// End to end with a real guest: the built CLI and daemon as a user runs them, a Debian image built
// by `image build --debian-kernel`, booted under QEMU (software emulation) by the QEMU stand-in for
// Firecracker, on a real root disk, TAP and NAT inside network namespaces made here.
// Runs when BANGER_E2E=1 or CI=true, as root: BANGER_E2E=1 npx vitest run test/e2e (see docs/e2e.md).
//
//   "outside" netns: out0 198.51.100.1/24, an HTTP server that records who called
//        | veth
//   "host" netns: up0 198.51.100.2/24, default route via .1; bangerd, the stand-in, QEMU, the VM's TAP
//        | TAP bg<id> 172.16.0.1/30, MASQUERADE out of up0
//   guest 172.16.0.2
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { accessSync, constants, existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { BangerEnv, ROOT, isAlive, type RunResult } from '../helpers/banger-env.js';
import { sh } from '../helpers/netns.js';
import { ensureFcQemuBuilt, FC_QEMU_FIRECRACKER } from '../fc-qemu/build.js';

const CACHE_ROOT = process.env.BANGER_E2E_CACHE || '/var/tmp/banger-e2e-cache';
/** Cache entries unused for this long are deleted when a new one is written. */
const CACHE_MAX_AGE_MS = 7 * 24 * 3600_000;
const IMAGE_SIZE = '1G';
const SUITE = 'bookworm';
const STOP_TIMEOUT_S = 60;
const SSH_WAIT_MS = 180_000;
const SERVER_PORT = 8080;
const OUTSIDE_IP = '198.51.100.1';
const UPLINK_IP = '198.51.100.2';

const sbinPath = ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'];

function onPath(tool: string): boolean {
  return [...(process.env.PATH ?? '').split(delimiter), ...sbinPath].some((dir) => {
    try {
      accessSync(join(dir, tool), constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}

function skipReason(): string | null {
  if (process.env.BANGER_E2E !== '1' && process.env.CI !== 'true') return 'set BANGER_E2E=1 to run it (it runs by default when CI=true)';
  if (process.getuid?.() !== 0) return 'not root (it needs network namespaces, TAPs, iptables and debootstrap)';
  const tools: [string, string][] = [
    ['qemu-system-x86_64', 'qemu-system-x86'],
    ['debootstrap', 'debootstrap'],
    ['ip', 'iproute2'],
    ['iptables', 'iptables'],
    ['ssh', 'openssh-client'],
    ['mkfs.ext4', 'e2fsprogs'],
  ];
  for (const [tool, pkg] of tools) if (!onPath(tool)) return `${tool} is not installed (apt-get install ${pkg})`;
  if (!existsSync('/dev/net/tun')) return 'no /dev/net/tun: TAP devices are unavailable';
  return null;
}

const skip = skipReason();
if (skip) console.warn(`skipping the QEMU end-to-end test: ${skip}`);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

/** Two network namespaces joined by a veth: "host" (banger's side, default route out) and "outside". */
class E2eNetwork {
  readonly host = `bge2e-h-${randomBytes(3).toString('hex')}`;
  readonly outside = `bge2e-o-${randomBytes(3).toString('hex')}`;
  readonly uplink = 'up0';

  constructor() {
    try {
      sh(['ip', 'netns', 'add', this.host]);
      sh(['ip', 'netns', 'add', this.outside]);
      for (const ns of [this.host, this.outside]) sh(['ip', '-n', ns, 'link', 'set', 'lo', 'up']);
      sh(['ip', '-n', this.host, 'link', 'add', this.uplink, 'type', 'veth', 'peer', 'name', 'out0', 'netns', this.outside]);
      sh(['ip', '-n', this.host, 'addr', 'add', `${UPLINK_IP}/24`, 'dev', this.uplink]);
      sh(['ip', '-n', this.outside, 'addr', 'add', `${OUTSIDE_IP}/24`, 'dev', 'out0']);
      sh(['ip', '-n', this.host, 'link', 'set', this.uplink, 'up']);
      sh(['ip', '-n', this.outside, 'link', 'set', 'out0', 'up']);
      // The outside has no route to the guests' pool: only NAT gets answers back to them.
      sh(['ip', '-n', this.host, 'route', 'add', 'default', 'via', OUTSIDE_IP, 'dev', this.uplink]);
    } catch (err) {
      this.destroy();
      throw err;
    }
  }

  prefix(ns: string): string[] {
    return ['ip', 'netns', 'exec', ns];
  }

  inHost(argv: string[], opts: { allowFail?: boolean } = {}): string {
    return sh([...this.prefix(this.host), ...argv], opts);
  }

  links(): string[] {
    return (JSON.parse(this.inHost(['ip', '-j', 'link', 'show'])) as { ifname: string }[]).map((l) => l.ifname);
  }

  /** iptables rules in the host namespace that name the VM (filter and nat tables). */
  rulesOf(vmId: string): string[] {
    return ['filter', 'nat'].flatMap((t) => this.inHost(['iptables', '-t', t, '-S']).split('\n')).filter((l) => l.includes(`banger:${vmId}`));
  }

  /** Kills whatever still runs in the namespaces (QEMU included), then deletes them. */
  destroy(): void {
    for (const ns of [this.host, this.outside]) {
      const pids = sh(['ip', 'netns', 'pids', ns], { allowFail: true }).split('\n').filter(Boolean);
      for (const p of pids) spawnSync('kill', ['-9', p]);
      sh(['ip', 'netns', 'delete', ns], { allowFail: true });
    }
  }
}

/** A small HTTP server in the outside namespace that answers and records each caller's address. */
class OutsideServer {
  readonly record: string;
  private child: ChildProcess | null = null;

  constructor(
    private readonly net: E2eNetwork,
    dir: string,
  ) {
    this.record = join(dir, 'outside-requests.ndjson');
  }

  async start(): Promise<void> {
    const script = [
      "const http = require('node:http'); const fs = require('node:fs');",
      'const [record, port] = process.argv.slice(1);',
      'http.createServer((req, res) => {',
      '  const who = req.socket.remoteAddress;',
      '  fs.appendFileSync(record, JSON.stringify({ remoteAddress: who, url: req.url }) + "\\n");',
      '  res.end(`hello ${who} ${req.url}\\n`);',
      "}).listen(Number(port), '0.0.0.0', () => console.log('listening'));",
    ].join('\n');
    const child = spawn('ip', [...this.net.prefix(this.net.outside).slice(1), process.execPath, '-e', script, this.record, String(SERVER_PORT)], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    this.child = child;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('the outside HTTP server did not start within 10 s')), 10_000);
      child.stdout!.on('data', (d: Buffer) => {
        if (d.toString().includes('listening')) {
          clearTimeout(timer);
          resolve();
        }
      });
      child.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`the outside HTTP server exited with code ${code}`));
      });
    });
  }

  requests(): { remoteAddress: string; url: string }[] {
    if (!existsSync(this.record)) return [];
    return readFileSync(this.record, 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l));
  }

  stop(): void {
    this.child?.kill('SIGKILL');
  }
}

/** The cache key: the content of everything that makes the image, and the build's parameters. */
function imageCacheKey(): string {
  const h = createHash('sha256');
  for (const f of ['scripts/build-rootfs.sh', 'scripts/extract-vmlinux.sh', 'scripts/customize-rootfs.sh', 'src/daemon/image-build.ts']) {
    h.update(f).update(readFileSync(join(ROOT, f)));
  }
  h.update(`suite=${SUITE} size=${IMAGE_SIZE} mirror=${process.env.BANGER_DEBIAN_MIRROR ?? ''}`);
  return h.digest('hex').slice(0, 16);
}

interface CachedImage {
  kernel: string;
  rootfs: string;
  initrd: string;
  bootArgs: string;
}

function readCache(dir: string): CachedImage | null {
  let m: { bootArgs: string };
  try {
    m = JSON.parse(readFileSync(join(dir, 'image.json'), 'utf8')) as { bootArgs: string };
  } catch {
    return null;
  }
  const files = { kernel: join(dir, 'vmlinux'), rootfs: join(dir, 'rootfs.ext4'), initrd: join(dir, 'initrd.img') };
  if (!Object.values(files).every((f) => existsSync(f))) return null;
  const now = new Date();
  utimesSync(dir, now, now);
  return { ...files, bootArgs: m.bootArgs };
}

/** Copies a built image's files into the cache (whole or not at all) and drops entries unused for a week. */
function writeCache(dir: string, image: { kernelPath: string; rootfsPath: string; initrdPath: string; bootArgs: string }): void {
  mkdirSync(CACHE_ROOT, { recursive: true });
  const partial = `${dir}.partial-${process.pid}`;
  rmSync(partial, { recursive: true, force: true });
  mkdirSync(partial);
  for (const [from, to] of [
    [image.kernelPath, 'vmlinux'],
    [image.rootfsPath, 'rootfs.ext4'],
    [image.initrdPath, 'initrd.img'],
  ]) {
    sh(['cp', '--sparse=always', '--reflink=auto', from, join(partial, to)]);
  }
  writeFileSync(join(partial, 'image.json'), `${JSON.stringify({ bootArgs: image.bootArgs, builtAt: new Date().toISOString() })}\n`);
  rmSync(dir, { recursive: true, force: true });
  renameSync(partial, dir);
  for (const name of readdirSync(CACHE_ROOT)) {
    const p = join(CACHE_ROOT, name);
    if (p !== dir && Date.now() - statSync(p).mtimeMs > CACHE_MAX_AGE_MS) rmSync(p, { recursive: true, force: true });
  }
}

/** Progress phases the daemon logged after byte offset `from` of its log, with their time since the operation began. */
function loggedPhases(log: string, from: number): { phase: string; elapsedMs: number }[] {
  return readFileSync(log)
    .subarray(from)
    .toString('utf8')
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as { msg?: string; phase?: string; elapsedMs?: number })
    .filter((e) => e.msg === 'phase' && e.phase)
    .map((e) => ({ phase: e.phase!, elapsedMs: e.elapsedMs ?? 0 }));
}

/** Children of pid, from /proc/<pid>/task/<pid>/children. */
function childrenOf(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

function cmdline(pid: number): string[] {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
  } catch {
    return [];
  }
}

describe.skipIf(skip !== null)('a real guest under QEMU, end to end', () => {
  let net: E2eNetwork;
  let server: OutsideServer;
  let env: BangerEnv;
  /** The VM as `vm show --json` last printed it; undefined before the create, null once removed. */
  let vm: any;
  let createAttempted = false;
  const name = `e2e-${randomBytes(2).toString('hex')}`;
  const token = randomBytes(8).toString('hex');
  const timings: Record<string, string> = {};
  let qemuPids: number[] = [];

  /** The CLI inside the host namespace (it starts its daemon there). */
  const cli = (args: string[], timeoutMs = 120_000): RunResult => env.cli(args, { prefix: net.prefix(net.host), timeoutMs });
  const ok = (args: string[], timeoutMs?: number): string => {
    const r = cli(args, timeoutMs);
    if (r.code !== 0) throw new Error(`banger ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
    return r.stdout;
  };
  const json = (args: string[], timeoutMs?: number) => JSON.parse(ok([...args, '--json'], timeoutMs));
  const consoleLog = () => ok(['vm', 'logs', name, '--lines', '100000']);

  /** Runs `banger vm ssh` until the guest answers, as --wait-ssh does for create. */
  async function waitForSsh(): Promise<number> {
    const started = Date.now();
    let last: RunResult | null = null;
    while (Date.now() - started < SSH_WAIT_MS) {
      last = cli(['vm', 'ssh', name, '--', 'true'], 30_000);
      if (last.code === 0) return Date.now() - started;
      await sleep(1000);
    }
    throw new Error(`no SSH after ${seconds(SSH_WAIT_MS)}: ${last?.stderr}\nconsole:\n${consoleLog().split('\n').slice(-30).join('\n')}`);
  }

  /** The QEMU processes the VM's stand-in runs (through setpriv, which execs QEMU in place). */
  function qemuOf(standinPid: number): number[] {
    return childrenOf(standinPid).filter((p) => cmdline(p)[0]?.endsWith('qemu-system-x86_64'));
  }

  beforeAll(async () => {
    if (!existsSync(join(ROOT, 'dist/banger.cjs')) || !existsSync(join(ROOT, 'dist/bangerd.js'))) {
      throw new Error('dist/ is not built: run npm run build (npm test does it)');
    }
    await ensureFcQemuBuilt();
    net = new E2eNetwork();
    env = new BangerEnv({
      PATH: [join(ROOT, 'test/fc-standin'), ...(process.env.PATH ?? '').split(delimiter), ...sbinPath].join(delimiter),
      BANGER_FIRECRACKER: FC_QEMU_FIRECRACKER,
      BANGER_ROOTFS_STRATEGY: process.env.BANGER_E2E_ROOTFS_STRATEGY || 'auto',
      BANGER_BUILD_ID: 'e2e-test',
      ...Object.fromEntries(
        ['BANGER_DEBIAN_MIRROR', 'http_proxy', 'https_proxy', 'no_proxy'].filter((k) => process.env[k]).map((k) => [k, process.env[k]!]),
      ),
    });
    server = new OutsideServer(net, env.dir);
    await server.start();
  }, 60_000);

  afterAll(async () => {
    try {
      // A failed run may leave the VM running: let banger release its disk, TAP and rules.
      if (createAttempted && vm !== null) cli(['vm', 'rm', '--force', name], 60_000);
    } catch {
      // reported by the tests already
    }
    await env?.cleanup();
    for (const p of qemuPids) if (isAlive(p)) process.kill(p, 'SIGKILL');
    server?.stop();
    net?.destroy();
    if (Object.keys(timings).length > 0) console.log(`QEMU end-to-end timings: ${JSON.stringify(timings)}`);
  }, 120_000);

  it('builds a Debian image with the Debian kernel (or adds the cached build of the same scripts)', () => {
    const cacheDir = join(CACHE_ROOT, imageCacheKey());
    const cached = readCache(cacheDir);
    const started = Date.now();
    if (cached) {
      ok(['image', 'add', 'debian', '--kernel', cached.kernel, '--rootfs', cached.rootfs, '--initrd', cached.initrd, '--boot-args', cached.bootArgs]);
      timings.imageAddFromCache = seconds(Date.now() - started);
    } else {
      // debootstrap needs the internet, which the host namespace has not: this one command runs
      // with the daemon in the machine's own namespace, on the same state, and the daemon is then stopped.
      const r = env.cli(['image', 'build', 'debian', '--debian-kernel', '--suite', SUITE, '--size', IMAGE_SIZE], { timeoutMs: 20 * 60_000 });
      expect(r.code, r.stderr).toBe(0);
      expect(env.cli(['daemon', 'stop']).code).toBe(0);
      timings.imageBuild = seconds(Date.now() - started);
    }
    const image = json(['image', 'show', 'debian']);
    expect(image.bootArgs).toBe('net.ifnames=0');
    expect(image.initrdPath).toMatch(/initrd\.img$/);
    // The kernel is an ELF vmlinux (what Firecracker loads), extracted from Debian's bzImage.
    expect(readFileSync(image.kernelPath).subarray(0, 4)).toEqual(Buffer.from([0x7f, 0x45, 0x4c, 0x46]));
    if (!cached) writeCache(cacheDir, image);
  }, 25 * 60_000);

  it('creates a VM that boots under QEMU, waits for its SSH server, and answers with its own name', () => {
    const started = Date.now();
    const logFrom = statSync(env.log).size;
    createAttempted = true;
    vm = json(['vm', 'create', '--name', name, '--image', 'debian', '--wait-ssh'], SSH_WAIT_MS + 60_000);
    timings.createToSsh = seconds(Date.now() - started);
    const phases = loggedPhases(env.log, logFrom);
    const at = (phase: string) => phases.find((p) => p.phase === phase)?.elapsedMs;
    expect(at('ssh.ready')).toBeGreaterThan(at('vmm.start')!);
    timings.instanceStartToSsh = seconds(at('ssh.ready')! - at('vmm.start')!);
    expect(vm).toMatchObject({ name, state: 'running', nat: true });
    // The recorded pid is the stand-in's, and it runs QEMU on the VM's TAP with the VM's MAC.
    expect(cmdline(vm.pid).join(' ')).toContain('fc-qemu.js');
    qemuPids = qemuOf(vm.pid);
    expect(qemuPids).toHaveLength(1);
    const qemuArgs = cmdline(qemuPids[0]).join(' ');
    expect(qemuArgs).toContain(`ifname=${vm.tap},`);
    expect(qemuArgs).toContain(`mac=${vm.mac}`);
    expect(qemuArgs).not.toContain('enable-kvm');
    expect(net.links()).toContain(vm.tap);

    const r = cli(['vm', 'ssh', name, '--', 'hostname']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.trim()).toBe(name);
    // The guest's address is the one banger gave it through ip= on the kernel command line.
    expect(ok(['vm', 'ssh', name, '--', 'ip', '-4', '-o', 'addr', 'show', 'dev', 'eth0'])).toContain(` ${vm.guestIp}/30 `);
  }, SSH_WAIT_MS + 120_000);

  it("reaches a server outside through NAT, which sees the host's uplink address, not the guest's", () => {
    const fetch = `exec 3<>/dev/tcp/${OUTSIDE_IP}/${SERVER_PORT} && printf 'GET /from-guest/${token} HTTP/1.0\\r\\n\\r\\n' >&3 && cat <&3`;
    const r = cli(['vm', 'ssh', name, '--', 'bash', '-c', fetch]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^HTTP\/1\.[01] 200 /);
    expect(r.stdout).toContain(`hello ${UPLINK_IP} /from-guest/${token}`);
    const seen = server.requests().filter((q) => q.url === `/from-guest/${token}`);
    expect(seen).toHaveLength(1);
    expect(seen[0].remoteAddress).toBe(UPLINK_IP);
    expect(seen[0].remoteAddress).not.toBe(vm.guestIp);
    expect(net.rulesOf(vm.id).some((l) => l.includes('MASQUERADE'))).toBe(true);
  }, 120_000);

  it("stops through the guest's own shutdown after Ctrl-Alt-Del, well before the kill timeout", () => {
    const write = `echo ${token} > /root/e2e-persisted && sync`;
    expect(cli(['vm', 'ssh', name, '--', 'sh', '-c', write]).code).toBe(0);
    const logFrom = statSync(env.log).size;
    const started = Date.now();
    const stopped = json(['vm', 'stop', name, '--timeout', String(STOP_TIMEOUT_S)], (STOP_TIMEOUT_S + 60) * 1000);
    const took = Date.now() - started;
    timings.gracefulStop = seconds(took);
    expect(stopped).toMatchObject({ state: 'stopped', pid: null, lastError: null });
    expect(took).toBeLessThan(STOP_TIMEOUT_S * 1000);
    // The daemon asked and waited; it never had to kill.
    const phases = loggedPhases(env.log, logFrom).map((p) => p.phase);
    expect(phases).toContain('vmm.ctrl-alt-del');
    expect(phases).toContain('vmm.wait-exit');
    expect(phases).not.toContain('vmm.kill');
    // The console shows the guest rebooting on the key press, then QEMU ending on its own with status 0.
    const lines = consoleLog().split('\n');
    const last = (needle: string) => lines.map((l, i) => (l.includes(needle) ? i : -1)).reduce((a, b) => Math.max(a, b), -1);
    const asked = last('fc-qemu: SendCtrlAltDel: sendkey ctrl-alt-delete');
    const rebooting = last('reboot: Restarting system');
    const qemuEnded = last('fc-qemu: qemu-system-x86_64 exited with code 0');
    expect(asked).toBeGreaterThanOrEqual(0);
    expect(rebooting).toBeGreaterThan(asked);
    expect(qemuEnded).toBeGreaterThan(rebooting);
    expect(isAlive(vm.pid)).toBe(false);
    for (const p of qemuPids) expect(isAlive(p)).toBe(false);
    expect(net.links()).not.toContain(vm.tap);
    expect(net.rulesOf(vm.id)).toEqual([]);
  }, (STOP_TIMEOUT_S + 90) * 1000);

  it('starts again, and the file written before the stop is still on its disk', async () => {
    const started = Date.now();
    const again = json(['vm', 'start', name]);
    expect(again.state).toBe('running');
    expect(again.pid).not.toBe(vm.pid);
    qemuPids = qemuOf(again.pid);
    expect(qemuPids).toHaveLength(1);
    vm = again;
    await waitForSsh();
    timings.startToSsh = seconds(Date.now() - started);
    const r = cli(['vm', 'ssh', name, '--', 'cat', '/root/e2e-persisted']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.trim()).toBe(token);
  }, SSH_WAIT_MS + 60_000);

  it('removes the VM and leaves nothing on the host: no process, TAP, rule, loop device, socket or file', () => {
    const r = cli(['vm', 'rm', '--force', name], 60_000);
    expect(r.code, r.stderr).toBe(0);
    expect(json(['vm', 'ls'])).toEqual([]);
    expect(isAlive(vm.pid)).toBe(false);
    for (const p of qemuPids) expect(isAlive(p)).toBe(false);
    expect(sh(['pgrep', '-f', vm.id], { allowFail: true }).trim()).toBe('');
    expect(net.links()).not.toContain(vm.tap);
    expect(net.rulesOf(vm.id)).toEqual([]);
    expect(sh(['losetup', '-a'], { allowFail: true }).split('\n').filter((l) => l.includes(env.dir))).toEqual([]);
    expect(sh(['dmsetup', 'ls'], { allowFail: true })).not.toContain(`banger-${vm.id}`);
    expect(existsSync(join(env.env.XDG_RUNTIME_DIR, 'banger', 'vms', `${vm.id}.sock`))).toBe(false);
    // The monitor socket is abstract (no file); none of the VM's is left in the namespace.
    expect(net.inHost(['cat', '/proc/net/unix'])).not.toContain(vm.id);
    expect(existsSync(join(env.stateDir, 'vms', vm.id))).toBe(false);
    expect(sh(['find', env.dir, '-name', `*${vm.id}*`]).trim()).toBe('');
    vm = null;
  }, 120_000);
});
