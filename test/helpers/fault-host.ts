// Fault-injection harness for the crash-safety tests: a Runner wrapper that fails exactly one call
// (by command prefix and call number), two hosts (the stateful fake tools, and real tools inside a
// throwaway network namespace), an in-process daemon over either one on a real socket, and the
// invariant of SPEC 7: the host holds nothing that no VM owns.
import { request, Agent } from 'node:http';
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import { build } from 'esbuild';
import { join } from 'node:path';
import pino from 'pino';
import { HostCommandError } from '../../src/core/errors.js';
import type { RunOptions, RunResult, Runner, SpawnOptions, SpawnedProcess } from '../../src/core/ports.js';
import { ExecRunner } from '../../src/host/runner.js';
import { startDaemon, type RunningDaemon } from '../../src/daemon/compose.js';
import { newId } from '../../src/core/names.js';
import { findFirecrackerProcesses, isSameProcess } from '../../src/firecracker/proc.js';
import type { Paths } from '../../src/core/paths.js';
import { FakeRunner } from '../fakes/fake-runner.js';
import { installFakeDisk, type FakeDisk } from '../fakes/fake-disk.js';
import { installFakeNet, type FakeNet } from '../fakes/fake-net.js';
import { NetnsRunner } from '../fakes/netns-runner.js';
import { HostNetns, sh } from './netns.js';
import { STANDIN_DIR } from '../fc-standin/build.js';
import { killStandins } from './banger-env.js';

// ---------------------------------------------------------------- a private stand-in

let privateStandin: Promise<string> | null = null;

function hashTree(dir: string, h: ReturnType<typeof createHash>): void {
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) hashTree(p, h);
    else h.update(p).update(readFileSync(p));
  }
}

/**
 * A `firecracker` stand-in bundled for these tests alone, as one executable file with a node
 * shebang, at a path named by the hash of its sources (built once, renamed into place whole).
 * Private: the shared dist/fc-standin.js is rewritten in place by every `npm run build`, and a
 * stand-in started while it is half-written exits 0 without a word. One file, no shell wrapper: a
 * wrapper that execs node after the launcher has recorded its pid leaves a moment in which
 * /proc/<pid>/cmdline reads empty, and the launcher takes that for an exit.
 */
export function standinBinary(): Promise<string> {
  privateStandin ??= (async () => {
    const h = createHash('sha256').update(process.execPath);
    hashTree(STANDIN_DIR, h);
    hashTree(join(STANDIN_DIR, '../../src/firecracker'), h);
    const binary = join(tmpdir(), `banger-fc-standin-${h.digest('hex').slice(0, 16)}`);
    if (existsSync(binary)) return binary;
    const partial = `${binary}.${process.pid}.tmp`;
    await build({
      entryPoints: [join(STANDIN_DIR, 'main.ts')],
      bundle: true,
      platform: 'node',
      target: 'node20',
      format: 'esm',
      outfile: partial,
      banner: { js: `#!${process.execPath}` },
      logLevel: 'warning',
    });
    chmodSync(partial, 0o755);
    renameSync(partial, binary);
    return binary;
  })();
  return privateStandin;
}

// ---------------------------------------------------------------- the faulty runner

export interface RecordedCall {
  kind: 'run' | 'spawn';
  argv: string[];
  /** The progress phase the daemon had announced when the call was made. */
  phase: string | null;
}

export interface Fault {
  kind: 'run' | 'spawn';
  /** Matches calls whose argv joined by spaces starts with this ("iptables -w"). */
  prefix: string;
  /** 1-based: the Nth matching call after arming fails. */
  nth: number;
  /** Goes into the failure's stderr, so that the operation's error can be traced to it. */
  marker: string;
}

/** Exit code of an injected failure: not 1, which probes such as `iptables -C` read as "absent". */
export const FAULT_EXIT_CODE = 4;

/**
 * Wraps a Runner: logs every call with the daemon's current phase, fails the armed one (a run
 * exits FAULT_EXIT_CODE without running; a spawn throws), and adds spawnEnv to every spawn.
 */
export class FaultRunner implements Runner {
  readonly calls: RecordedCall[] = [];
  phase: string | null = null;
  /** Environment for spawned processes (the stand-in's FC_STANDIN_* switches). */
  spawnEnv: Record<string, string> = {};
  private armed: (Fault & { seen: number; firedAt: number | null }) | null = null;

  constructor(private readonly inner: Runner) {}

  arm(fault: Fault): void {
    this.armed = { ...fault, seen: 0, firedAt: null };
  }

  /** Disarms; answers the index in calls of the call that failed, or null when none did. */
  disarm(): number | null {
    const at = this.armed?.firedAt ?? null;
    this.armed = null;
    return at;
  }

  private shouldFail(kind: 'run' | 'spawn', argv: string[], index: number): Fault | null {
    const f = this.armed;
    if (!f || f.kind !== kind || f.firedAt !== null || !argv.join(' ').startsWith(f.prefix)) return null;
    f.seen += 1;
    if (f.seen !== f.nth) return null;
    f.firedAt = index;
    return f;
  }

  async run(argv: string[], options: RunOptions = {}): Promise<RunResult> {
    const index = this.calls.push({ kind: 'run', argv: [...argv], phase: this.phase }) - 1;
    const fault = this.shouldFail('run', argv, index);
    if (fault) {
      const stderr = `${fault.marker}\n`;
      if (options.check === false) return { exitCode: FAULT_EXIT_CODE, stdout: '', stderr };
      throw new HostCommandError({ argv, exitCode: FAULT_EXIT_CODE, stderr });
    }
    return this.inner.run(argv, options);
  }

  spawn(argv: string[], options: SpawnOptions = {}): SpawnedProcess {
    const index = this.calls.push({ kind: 'spawn', argv: [...argv], phase: this.phase }) - 1;
    const fault = this.shouldFail('spawn', argv, index);
    if (fault) throw new HostCommandError({ argv, exitCode: null, stderr: fault.marker });
    return this.inner.spawn(argv, { ...options, env: { ...options.env, ...this.spawnEnv } });
  }
}

/** A call with VM ids and temporary paths masked, to compare calls across runs. */
export function normalizeCall(c: Pick<RecordedCall, 'kind' | 'argv'>, root: string): string {
  return `${c.kind} ${c.argv.join(' ')}`.split(root).join('<root>').replace(/[0-9a-f]{12}/g, '<id>');
}

/** The prefix a fault uses to find a call again: its first two words, cut before any path or VM id. */
export function callPrefix(c: Pick<RecordedCall, 'argv'>): string {
  const words: string[] = [];
  for (const w of c.argv.slice(0, 2)) {
    if (words.length > 0 && (w.includes('/') || /[0-9a-f]{12}/.test(w))) break;
    words.push(w);
  }
  return words.join(' ');
}

// ---------------------------------------------------------------- hosts

/** Host objects banger can leave behind, as the host (fake or real) reports them. */
export interface HostObjects {
  taps: string[];
  /** iptables rules tagged banger:<id>, with the id. */
  rules: { vmId: string; line: string }[];
  /** heldBy: mapper devices whose table uses the loop; autoclear: detached while held, gone once they are. */
  loops: { dev: string; file: string; heldBy: string[]; autoclear: boolean }[];
  dms: string[];
}

export interface FaultHost {
  readonly kind: 'fake' | 'netns';
  readonly runner: FaultRunner;
  objects(root: string): HostObjects;
  destroy(): void;
}

// The stand-in checks at InstanceStart that /sys/class/net/<tap> and the drive path exist, as
// Firecracker would. With the fake host they exist only in the fake's tables, so the stand-in runs
// in a private mount namespace whose /sys/class/net and /dev/mapper show exactly those names.
const FAKE_VIEW_PRELUDE =
  'mount -t tmpfs fake-net /sys/class/net && mount -t tmpfs fake-mapper /dev/mapper && ' +
  'for n in $FAKE_TAPS; do : > "/sys/class/net/$n"; done && for n in $FAKE_DMS; do : > "/dev/mapper/$n"; done && exec "$@"';

/** The stateful fake disk and network tools; Firecracker is the real stand-in process. */
export class FakeFaultHost implements FaultHost {
  readonly kind = 'fake';
  readonly fake = new FakeRunner();
  readonly disk: FakeDisk;
  readonly net: FakeNet;
  readonly runner: FaultRunner;

  constructor() {
    this.disk = installFakeDisk(this.fake);
    this.net = installFakeNet(this.fake);
    const exec = new ExecRunner();
    this.fake.spawnHandler = (argv, options) =>
      exec.spawn(['unshare', '--mount', '--propagation', 'private', 'sh', '-c', FAKE_VIEW_PRELUDE, 'fake-view', ...argv], {
        ...options,
        env: { ...options.env, FAKE_TAPS: this.net.taps().join(' '), FAKE_DMS: [...this.disk.dms.keys()].join(' ') },
      });
    this.runner = new FaultRunner(this.fake);
  }

  objects(): HostObjects {
    return {
      taps: this.net.taps(),
      rules: this.net.rules.flatMap((r) => {
        const at = r.args.indexOf('--comment');
        const tag = at >= 0 ? r.args[at + 1] : '';
        return tag.startsWith('banger:') ? [{ vmId: tag.slice('banger:'.length), line: `${r.table} ${r.chain} ${r.args.join(' ')}` }] : [];
      }),
      loops: [...this.disk.loops.values()].map((l) => ({
        dev: l.name,
        file: l.backingFile,
        heldBy: [...this.disk.dms.values()].filter((d) => d.targets.some((t) => t.args.includes(l.name))).map((d) => d.name),
        autoclear: l.isAutoclear,
      })),
      dms: [...this.disk.dms.keys()],
    };
  }

  destroy(): void {}
}

/** Real ip, iptables, sysctl, cp, e2fsck... inside a throwaway network namespace standing for the host. */
export class NetnsFaultHost implements FaultHost {
  readonly kind = 'netns';
  readonly ns = new HostNetns();
  readonly runner: FaultRunner;

  constructor() {
    this.runner = new FaultRunner(new NetnsRunner(this.ns.name));
  }

  objects(root: string): HostObjects {
    const known = new Set(['lo', this.ns.uplink, 'up0peer']);
    const loops = (JSON.parse(sh(['losetup', '-J']) || '{"loopdevices":[]}') as { loopdevices: { name: string; 'back-file': string | null }[] }).loopdevices;
    return {
      taps: this.ns.links().filter((l) => !known.has(l)),
      rules: this.ns.rules().map((line) => ({ vmId: /banger:([0-9a-f]+)/.exec(line)?.[1] ?? '?', line })),
      loops: loops.filter((l) => (l['back-file'] ?? '').startsWith(root)).map((l) => ({ dev: l.name, file: l['back-file']!, heldBy: [], autoclear: false })),
      // This kernel may have no device-mapper; the copy strategy never makes mapper devices.
      dms: sh(['dmsetup', 'ls'], { allowFail: true })
        .split('\n')
        .map((l) => l.split('\t')[0])
        .filter((n) => n.startsWith('banger-')),
    };
  }

  destroy(): void {
    this.ns.destroy();
  }
}

// ---------------------------------------------------------------- the API over the socket

export interface ApiAnswer {
  status: number;
  body: any;
  raw: string;
}

/** One request to the daemon's socket; the body is sent as given (a string) or as JSON. */
export function callApi(
  socket: string,
  method: string,
  body: unknown,
  opts: { httpMethod?: string; path?: string; raw?: boolean; agent?: Agent; headers?: Record<string, string>; timeoutMs?: number } = {},
): Promise<ApiAnswer> {
  const payload = opts.raw ? Buffer.from(body as string | Buffer) : Buffer.from(body === undefined ? '' : JSON.stringify(body));
  return new Promise((resolve, reject) => {
    const req = request(
      {
        socketPath: socket,
        method: opts.httpMethod ?? 'POST',
        path: opts.path ?? `/v1/${method}`,
        agent: opts.agent,
        headers: { 'content-type': 'application/json', 'content-length': payload.length, ...opts.headers },
        timeout: opts.timeoutMs ?? 60_000,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const raw = Buffer.concat(chunks).toString('utf8');
          let parsed: unknown = null;
          try {
            parsed = JSON.parse(raw);
          } catch {
            parsed = null;
          }
          resolve({ status: res.statusCode ?? 0, body: parsed, raw });
        });
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`no answer to ${method} within ${opts.timeoutMs ?? 60_000} ms`)));
    req.on('error', reject);
    req.end(payload);
  });
}

// ---------------------------------------------------------------- an in-process daemon on a host

export interface ImageFiles {
  kernel: string;
  rootfs: string;
  initrd: string;
}

let startQueue: Promise<void> = Promise.resolve();

/** A real daemon (startDaemon) in this process on a temporary socket, over a fault host. */
export class DaemonHarness {
  readonly root: string;
  readonly env: Record<string, string>;
  running!: RunningDaemon;
  private unsubscribe: (() => void) | null = null;

  private constructor(
    readonly host: FaultHost,
    readonly strategy: 'dm' | 'copy',
  ) {
    this.root = mkdtempSync('/tmp/bgf-');
    this.env = {
      PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin',
      HOME: join(this.root, 'home'),
      XDG_STATE_HOME: join(this.root, 'state'),
      XDG_DATA_HOME: join(this.root, 'data'),
      XDG_CONFIG_HOME: join(this.root, 'config'),
      XDG_RUNTIME_DIR: join(this.root, 'run'),
      BANGER_ROOTFS_STRATEGY: strategy,
    };
    mkdirSync(this.env.XDG_RUNTIME_DIR, { recursive: true, mode: 0o700 });
  }

  /** Starts a daemon with one image, "base", registered from files (copied into its data dir). */
  static async start(host: FaultHost, strategy: 'dm' | 'copy', image: ImageFiles): Promise<DaemonHarness> {
    const h = new DaemonHarness(host, strategy);
    try {
      h.env.BANGER_FIRECRACKER = await standinBinary();
      await h.startDaemon();
      const id = newId();
      const dir = join(h.paths.imagesDir, id);
      mkdirSync(dir, { recursive: true });
      for (const [from, to] of [
        [image.kernel, 'vmlinux'],
        [image.rootfs, 'rootfs.ext4'],
        [image.initrd, 'initrd.img'],
      ]) {
        copyFileSync(from, join(dir, to));
      }
      h.daemon.deps.store.insertImage({
        id,
        name: 'base',
        kernelPath: join(dir, 'vmlinux'),
        rootfsPath: join(dir, 'rootfs.ext4'),
        initrdPath: join(dir, 'initrd.img'),
        bootArgs: 'quiet',
        rootfsSizeBytes: Number(sh(['stat', '-c', '%s', image.rootfs]).trim()),
        createdAt: new Date().toISOString(),
      });
      return h;
    } catch (err) {
      await h.stop();
      throw err;
    }
  }

  /** A daemon on this harness's directories and host; startDaemon recovers before it resolves. */
  private async startDaemon(): Promise<void> {
    // startDaemon swaps the process umask around listen(); two at once could leave it at 0177.
    const previous = startQueue;
    let done!: () => void;
    startQueue = new Promise<void>((r) => (done = r));
    await previous;
    try {
      const log = pino({ level: 'info' }, pino.destination({ dest: this.logFile, sync: true, mkdir: true }));
      this.running = await startDaemon({ env: this.env, runner: this.host.runner, log });
      this.unsubscribe = this.daemon.deps.events.subscribe((e) => {
        if (e.type === 'progress') this.host.runner.phase = e.phase;
      });
    } finally {
      done();
    }
  }

  get logFile(): string {
    return join(this.root, 'bangerd.log');
  }

  /**
   * Stands for SIGKILL of the daemon: the operation in flight stays paused forever and no clean-up
   * of it runs; the socket, the database and the watcher are closed; then a new daemon starts on the
   * same directories and host, and recovers.
   */
  async crashAndRestart(): Promise<void> {
    this.unsubscribe?.();
    await this.running.stop();
    await this.startDaemon();
  }

  get daemon() {
    return this.running.daemon;
  }
  get paths(): Paths {
    return this.daemon.deps.paths;
  }
  get socket(): string {
    return this.daemon.deps.settings.socket;
  }

  api(method: string, body: unknown = {}): Promise<ApiAnswer> {
    return callApi(this.socket, method, body);
  }

  /** Calls a method that must succeed; answers its result. */
  async ok<T = any>(method: string, body: unknown = {}): Promise<T> {
    const r = await this.api(method, body);
    if (r.status !== 200) throw new Error(`${method} ${JSON.stringify(body)} answered ${r.status}: ${r.raw}`);
    return r.body.result as T;
  }

  /** Stops the daemon, kills whatever it started that still runs, removes the temporary tree. */
  async stop(): Promise<void> {
    this.unsubscribe?.();
    try {
      await this.running?.stop();
    } finally {
      killStandins(this.root);
      rmSync(this.root, { recursive: true, force: true });
    }
  }
}

// ---------------------------------------------------------------- the invariant

/** Firecracker processes (stand-ins) whose API socket lies under root. */
export function firecrackersUnder(root: string) {
  return findFirecrackerProcesses().filter((p) => p.apiSock.startsWith(root));
}

/**
 * What breaks SPEC 7 for the daemon's VMs: host objects no VM owns (through the journal), VMs whose
 * state disagrees with their process and the host, journal rows of VMs that are gone, and VMs left
 * in a transient state. An empty list means consistent.
 */
export function findProblems(h: DaemonHarness): string[] {
  const store = h.daemon.deps.store;
  const vms = store.listVms();
  const ids = new Set(vms.map((v) => v.id));
  const journal = store.listAll();
  const owned = (kind: string, handle: string) => journal.some((r) => r.kind === kind && r.handle === handle && ids.has(r.vmId));
  const objects = h.host.objects(h.root);
  const procs = firecrackersUnder(h.root);
  const sockets = existsSync(h.paths.vmSocketsDir) ? readdirSync(h.paths.vmSocketsDir).map((f) => join(h.paths.vmSocketsDir, f)) : [];
  const dirs = existsSync(h.paths.vmsDir) ? readdirSync(h.paths.vmsDir) : [];
  const problems: string[] = [];

  for (const t of objects.taps) if (!owned('tap', t)) problems.push(`TAP ${t} is owned by no VM`);
  for (const r of objects.rules) if (!ids.has(r.vmId) || !journal.some((j) => j.vmId === r.vmId && j.kind === 'nat')) problems.push(`rule owned by no VM: ${r.line}`);
  // `losetup -d` of a loop a mapper device still uses only sets autoclear: it goes with that device.
  for (const l of objects.loops) {
    if (!owned('loop', l.dev) && !(l.autoclear && l.heldBy.some((d) => owned('dm', d)))) problems.push(`loop ${l.dev} on ${l.file} is owned by no VM`);
  }
  for (const d of objects.dms) if (!owned('dm', d)) problems.push(`mapper device ${d} is owned by no VM`);
  for (const p of procs) {
    const vm = vms.find((v) => v.id === p.vmId);
    if (!owned('process', `${p.pid}:${p.startTime}`) && !(vm?.pid === p.pid)) problems.push(`firecracker pid ${p.pid} (--id ${p.vmId}) is owned by no VM`);
  }
  for (const s of sockets) if (!owned('socket', s)) problems.push(`socket ${s} is owned by no VM`);
  for (const d of dirs) if (!ids.has(d)) problems.push(`VM directory ${d} belongs to no VM`);
  for (const r of journal) if (!ids.has(r.vmId)) problems.push(`journal row of a deleted VM: ${r.kind} ${r.handle}`);

  for (const vm of vms) {
    const mine = journal.filter((r) => r.vmId === vm.id);
    const hostHas = {
      tap: objects.taps.includes(vm.tap),
      rules: objects.rules.filter((r) => r.vmId === vm.id).length,
      dm: objects.dms.includes(`banger-${vm.id}`),
      proc: procs.some((p) => p.vmId === vm.id),
    };
    const where = `VM ${vm.name} (${vm.state})`;
    switch (vm.state) {
      case 'running':
        if (vm.pid === null || vm.pidStartTime === null || !isSameProcess(vm.pid, vm.pidStartTime, vm.id)) problems.push(`${where}: its firecracker (pid ${vm.pid}) is not running`);
        if (!hostHas.tap) problems.push(`${where}: has no TAP ${vm.tap}`);
        if (vm.nat && hostHas.rules !== 3) problems.push(`${where}: has ${hostHas.rules} NAT rules, not 3`);
        if (vm.diskStrategy === 'dm' && !hostHas.dm) problems.push(`${where}: has no mapper device`);
        if (!existsSync(h.daemon.runtime.diskFile(vm))) problems.push(`${where}: its disk file is missing`);
        break;
      case 'stopped':
        if (vm.pid !== null) problems.push(`${where}: still has pid ${vm.pid}`);
        if (mine.some((r) => r.kind !== 'file')) problems.push(`${where}: journal still holds ${mine.filter((r) => r.kind !== 'file').map((r) => `${r.kind} ${r.handle}`).join(', ')}`);
        if (hostHas.tap || hostHas.rules || hostHas.dm || hostHas.proc) problems.push(`${where}: the host still holds ${JSON.stringify(hostHas)}`);
        if (!existsSync(h.daemon.runtime.diskFile(vm)) && vm.diskStrategy === 'copy') problems.push(`${where}: its disk file is missing`);
        break;
      case 'error':
        // A failed stop may leave its Firecracker running; then the record must still name it.
        if (vm.pid !== null && (vm.pidStartTime === null || !isSameProcess(vm.pid, vm.pidStartTime, vm.id))) problems.push(`${where}: names pid ${vm.pid}, which is not running`);
        if (hostHas.proc && vm.pid === null) problems.push(`${where}: its firecracker still runs, but the record has no pid`);
        if (!vm.lastError) problems.push(`${where}: has no lastError`);
        break;
      default:
        problems.push(`${where}: left in a transient state`);
    }
  }
  return problems;
}

/** Everything the harness's daemon could have made, for "after rm, nothing is left". */
export function leftovers(h: DaemonHarness): string[] {
  const o = h.host.objects(h.root);
  const out = [
    ...o.taps.map((t) => `TAP ${t}`),
    ...o.rules.map((r) => `rule ${r.line}`),
    ...o.loops.map((l) => `loop ${l.dev} on ${l.file}`),
    ...o.dms.map((d) => `mapper ${d}`),
    ...firecrackersUnder(h.root).map((p) => `firecracker pid ${p.pid}`),
    ...h.daemon.deps.store.listAll().map((r) => `journal ${r.vmId} ${r.kind} ${r.handle}`),
  ];
  if (existsSync(h.paths.vmSocketsDir)) out.push(...readdirSync(h.paths.vmSocketsDir).map((f) => `socket ${f}`));
  if (existsSync(h.paths.vmsDir)) out.push(...readdirSync(h.paths.vmsDir).map((f) => `VM dir ${f}`));
  return out;
}

// ---------------------------------------------------------------- the fault matrix

export type OpName = 'create' | 'start' | 'stop' | 'restart' | 'rm' | 'start-after-error';
/** start-after-error: the start of a VM in error that still holds a TAP a failed stop could not delete. */
export const OPS: OpName[] = ['create', 'start', 'stop', 'restart', 'rm', 'start-after-error'];
/** The target VM's disk is larger than the image, so that grow, fsck and resize run too. */
const EXTRA_DISK_BYTES = 8 * 1024 * 1024;
const TARGET = 'target';
const BYSTANDER = 'bystander';

/** PUT calls of a start, each failed in turn by the stand-in (FC_STANDIN_FAIL). */
export const FIRECRACKER_PUTS = ['PUT /machine-config', 'PUT /boot-source', 'PUT /drives/rootfs', 'PUT /network-interfaces/eth0', 'PUT /actions'];

function createTarget(h: DaemonHarness, start: boolean): Promise<ApiAnswer> {
  const image = h.daemon.deps.store.listImages()[0];
  return h.api('vm.create', { name: TARGET, image: 'base', diskSizeBytes: image.rootfsSizeBytes + EXTRA_DISK_BYTES, start });
}

/** Each operation: what must exist before it, and the call. A running bystander VM is always there. */
const OP_SPECS: Record<OpName, { setup: (h: DaemonHarness) => Promise<void>; run: (h: DaemonHarness) => Promise<ApiAnswer> }> = {
  create: { setup: async () => {}, run: (h) => createTarget(h, true) },
  start: {
    setup: async (h) => void expectOk(await createTarget(h, false)),
    run: (h) => h.api('vm.start', { vm: TARGET }),
  },
  stop: { setup: async (h) => void expectOk(await createTarget(h, true)), run: (h) => h.api('vm.stop', { vm: TARGET }) },
  restart: { setup: async (h) => void expectOk(await createTarget(h, true)), run: (h) => h.api('vm.restart', { vm: TARGET }) },
  rm: { setup: async (h) => void expectOk(await createTarget(h, true)), run: (h) => h.api('vm.delete', { vm: TARGET, force: true }) },
  'start-after-error': {
    setup: async (h) => {
      expectOk(await createTarget(h, true));
      h.host.runner.arm({ kind: 'run', prefix: 'ip link del', nth: 1, marker: 'setup: the TAP cannot be deleted' });
      const stop = await h.api('vm.stop', { vm: TARGET });
      h.host.runner.disarm();
      const held = h.daemon.deps.store.listAll().filter((r) => r.kind === 'tap');
      if (stop.status === 200 || held.length === 0) throw new Error(`setup: the stop should have failed holding the TAP: ${stop.raw}`);
    },
    run: (h) => h.api('vm.start', { vm: TARGET }),
  },
};

function expectOk(a: ApiAnswer): ApiAnswer {
  if (a.status !== 200) throw new Error(`setup failed: ${a.status} ${a.raw}`);
  return a;
}

export interface FaultSpec {
  /** A runner call to fail. */
  call?: Fault;
  /** A Firecracker API call the stand-in answers 400. */
  firecrackerFail?: string;
  /** Remove the target's API socket before the operation (its Firecracker cannot be asked anything). */
  removeApiSocket?: boolean;
}

export interface RunOutcome {
  answer: ApiAnswer;
  /** The operation's calls, from its first to its last. */
  calls: RecordedCall[];
  /** Index in calls of the failed call, or null. */
  firedAt: number | null;
  /** Invariant violations right after the operation. */
  problems: string[];
  /** What `vm rm --force` of every VM afterwards failed at or left behind. */
  afterRemoval: string[];
  /** Journal rows an error VM kept after the failed operation (owned, to be released later). */
  heldByError: string[];
  root: string;
}

/** One run: a fresh host and daemon, the setup, the operation with at most one fault, the checks, removal of every VM. */
export async function runOperation(makeHost: () => FaultHost, strategy: 'dm' | 'copy', image: ImageFiles, op: OpName, fault: FaultSpec = {}): Promise<RunOutcome> {
  const host = makeHost();
  let h: DaemonHarness | null = null;
  try {
    h = await DaemonHarness.start(host, strategy, image);
    const runner = host.runner;
    expectOk(await h.api('vm.create', { name: BYSTANDER, image: 'base' }));
    await OP_SPECS[op].setup(h);
    const bystander = h.daemon.deps.store.listVms().find((v) => v.name === BYSTANDER)!;
    if (fault.removeApiSocket) {
      const target = h.daemon.deps.store.listVms().find((v) => v.name === TARGET)!;
      rmSync(join(h.paths.vmSocketsDir, `${target.id}.sock`), { force: true });
    }
    const first = runner.calls.length;
    runner.phase = null;
    if (fault.call) runner.arm(fault.call);
    if (fault.firecrackerFail) runner.spawnEnv = { FC_STANDIN_FAIL: fault.firecrackerFail };
    const answer = await OP_SPECS[op].run(h);
    const fired = runner.disarm();
    runner.spawnEnv = {};
    const calls = runner.calls.slice(first);
    const problems = findProblems(h);
    const after = h.daemon.deps.store.getVm(bystander.id);
    if (after?.state !== 'running' || after.pid !== bystander.pid) problems.push(`the bystander VM was disturbed: ${after?.state} pid ${after?.pid} (was ${bystander.pid})`);
    const errorVms = new Set(h.daemon.deps.store.listVms().filter((v) => v.state === 'error').map((v) => v.id));
    const heldByError = h.daemon.deps.store
      .listAll()
      .filter((r) => errorVms.has(r.vmId) && r.kind !== 'file')
      .map((r) => `${r.kind} ${r.handle}`);
    // A VM a failure left in error starts again (releasing what it still held), and is consistent.
    for (const vm of h.daemon.deps.store.listVms().filter((v) => v.state === 'error')) {
      const r = await h.api('vm.start', { vm: vm.id });
      if (r.status !== 200) problems.push(`vm start ${vm.name} after the failure answered ${r.status}: ${r.body?.error?.message ?? r.raw}`);
      else problems.push(...findProblems(h).map((p) => `after vm start ${vm.name}: ${p}`));
    }
    const afterRemoval: string[] = [];
    for (const vm of h.daemon.deps.store.listVms()) {
      const r = await h.api('vm.delete', { vm: vm.id, force: true });
      if (r.status !== 200) afterRemoval.push(`vm rm --force ${vm.name} (${vm.state}) answered ${r.status}: ${r.body?.error?.message ?? r.raw}`);
    }
    afterRemoval.push(...leftovers(h));
    return { answer, calls, firedAt: fired === null ? null : fired - first, problems, afterRemoval, heldByError, root: h.root };
  } finally {
    await h?.stop();
    host.destroy();
  }
}

/** How each operation's error must begin: the operation and the VM, as a trail. */
export const ERROR_CONTEXT: Record<OpName, RegExp> = {
  create: /^(creating|starting) VM target: /,
  start: /^starting VM target: /,
  'start-after-error': /^starting VM target: /,
  stop: /^stopping VM target: /,
  restart: /^(stopping|starting) VM target: /,
  rm: /^removing VM target: /,
};

/** Runs fn over items, at most `limit` at a time (the runs mostly wait on processes). */
export async function forEachConcurrently<T>(items: T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await fn(items[next++]);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

/** Words an error must contain to name the step that failed in a phase. */
export function stepNamesFor(phase: string | null): string[] {
  if (phase === null) return [];
  if (phase === 'release') return ['releasing VM'];
  if (phase === 'disk.copy') return ['copy.'];
  if (phase === 'disk.delete') return ['disk.delete', 'deleting'];
  return [phase];
}

const STATUS_OF: Record<string, number> = {
  invalid_argument: 400,
  not_found: 404,
  already_exists: 409,
  failed_precondition: 409,
  host_command_failed: 500,
  internal: 500,
};

/** Problems with an error answer's shape: {"error": {"code", "message", "details"}} with the status of its code. */
export function errorShapeProblems(a: ApiAnswer): string[] {
  const e = a.body?.error;
  if (!e || typeof e !== 'object') return [`answer ${a.status} is not the error shape: ${a.raw.slice(0, 200)}`];
  const out: string[] = [];
  if (!(e.code in STATUS_OF)) out.push(`unknown error code ${e.code}`);
  else if (STATUS_OF[e.code] !== a.status) out.push(`code ${e.code} came with status ${a.status}`);
  if (typeof e.message !== 'string' || e.message === '') out.push('error without a message');
  if (!('details' in e)) out.push('error without details');
  if (Object.keys(a.body).length !== 1) out.push(`extra top-level keys: ${Object.keys(a.body).join(', ')}`);
  return out;
}

export interface MatrixResult {
  points: number;
  absorbed: string[];
  failures: string[];
  /** Faults whose operation failed and whose error VM kept journaled handles (released by a later rm). */
  heldByError: number;
}

/**
 * The matrix for one operation: a clean run records the calls; then each call k is failed in its
 * own run (by prefix and call number), and, for operations that start a VM, each Firecracker PUT.
 */
export async function runFaultMatrix(
  makeHost: () => FaultHost,
  strategy: 'dm' | 'copy',
  image: ImageFiles,
  op: OpName,
  log: (line: string) => void = () => {},
  concurrency = Number(process.env.FAULTS_CONCURRENCY ?? 6),
): Promise<MatrixResult> {
  const failures: string[] = [];
  const absorbed: string[] = [];
  let heldByError = 0;
  const clean = await runOperation(makeHost, strategy, image, op);
  if (clean.answer.status !== 200) throw new Error(`the clean ${op} failed: ${clean.answer.raw}`);
  if (clean.problems.length || clean.afterRemoval.length) throw new Error(`the clean ${op} broke the invariant: ${[...clean.problems, ...clean.afterRemoval].join('; ')}`);
  const normalized = clean.calls.map((c) => normalizeCall(c, clean.root));

  const cases: { label: string; fault: FaultSpec; phase: string | null; marker: string | null; expected: string | null }[] = [];
  clean.calls.forEach((c, k) => {
    const prefix = callPrefix(c);
    const nth = clean.calls.slice(0, k + 1).filter((x) => x.kind === c.kind && x.argv.join(' ').startsWith(prefix)).length;
    const marker = `injected fault #${k} in ${op}`;
    cases.push({ label: `${op} call ${k} [${c.phase}] ${normalized[k]}`, fault: { call: { kind: c.kind, prefix, nth, marker } }, phase: c.phase, marker, expected: normalized[k] });
  });
  if (op === 'create' || op === 'start' || op === 'restart' || op === 'start-after-error') {
    for (const put of FIRECRACKER_PUTS) {
      cases.push({ label: `${op} firecracker ${put}`, fault: { firecrackerFail: put }, phase: put === 'PUT /actions' ? 'vmm.start' : 'vmm.configure', marker: put, expected: null });
    }
  }
  if (op === 'stop') cases.push({ label: 'stop with the API socket gone', fault: { removeApiSocket: true }, phase: null, marker: null, expected: null });

  await forEachConcurrently(cases, concurrency, async (c) => {
    const out = await runOperation(makeHost, strategy, image, op, c.fault);
    const fail = (why: string) => failures.push(`${strategy} ${c.label}: ${why}`);
    if (c.fault.call) {
      if (out.firedAt === null) fail('the fault never fired');
      else if (normalizeCall(out.calls[out.firedAt], out.root) !== c.expected) fail(`the fault hit another call: ${normalizeCall(out.calls[out.firedAt], out.root)}`);
    }
    if (out.answer.status === 200) {
      absorbed.push(`${strategy} ${c.label}`);
    } else {
      for (const p of errorShapeProblems(out.answer)) fail(p);
      const message: string = out.answer.body?.error?.message ?? '';
      if (c.marker && !message.includes(c.marker)) fail(`the error does not carry the failure: ${message}`);
      if (!ERROR_CONTEXT[op].test(message)) fail(`the error does not say which operation on which VM failed: ${message}`);
      const names = stepNamesFor(c.phase);
      if (names.length && !names.some((n) => message.includes(n))) fail(`the error does not name the step ${c.phase}: ${message}`);
      if (out.heldByError.length) heldByError++;
    }
    for (const p of out.problems) fail(p);
    for (const p of out.afterRemoval) fail(`after rm --force: ${p}`);
    log(`${out.answer.status === 200 ? 'ok ' : out.answer.status} ${strategy} ${c.label}${out.answer.status === 200 ? '' : ` -> ${out.answer.body?.error?.message}`}`);
  });
  return { points: cases.length, absorbed, failures, heldByError };
}
