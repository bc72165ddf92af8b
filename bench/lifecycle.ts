// create -> running against the Firecracker stand-in, inside a throwaway network namespace (real
// TAPs, iptables rules and copy root disks): median and p95 over VMs created one after another
// (through the daemon API, and through the CLI), VMs per second with concurrent creates against the
// target of >= 5 VMs per core per second, and where the time goes per start phase (daemon log).
// Root only. Usage: node bench/run.mjs lifecycle [--unprivileged]   (BENCH_VMS=20 by default)
// --unprivileged runs the daemon and the CLI as a throwaway user with passwordless sudo for
// banger's tools (made and removed by the benchmark), as banger is meant to run.
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { accessSync, constants, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { delimiter, join } from 'node:path';
import { BangerEnv, STANDIN_DIR, makeImageFiles } from '../test/helpers/banger-env.js';
import { HostNetns, privilegedSkipReason } from '../test/helpers/netns.js';
import { DaemonClient } from '../src/cli/client.js';
import { FirecrackerClient } from '../src/firecracker/api.js';
import { PRIVILEGED_TOOLS } from '../src/host/sudo-runner.js';

const N = Number(process.env.BENCH_VMS ?? 20);
const TARGET_PER_CORE = 5;

interface VmView {
  id: string;
  name: string;
  state: string;
}

const now = () => Number(process.hrtime.bigint()) / 1e6;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function quantile(xs: number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil(q * s.length) - 1)];
}
const fmt = (ms: number) => `${ms.toFixed(1).padStart(7)} ms`;
const summary = (xs: number[]) => `median ${fmt(quantile(xs, 0.5))}   p95 ${fmt(quantile(xs, 0.95))}   max ${fmt(Math.max(...xs))}`;

/** The stand-in alone: spawn to its API answering GET /, the floor under every vmm.spawn. */
async function timeStandinAlone(dir: string, runs: number): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < runs; i++) {
    const sock = join(dir, `alone-${i}.sock`);
    const t = now();
    const child = spawn(join(STANDIN_DIR, 'firecracker'), ['--api-sock', sock, '--id', `alone${i}`], { stdio: 'ignore' });
    const client = new FirecrackerClient(sock, { timeoutMs: 200 });
    for (;;) {
      try {
        await client.getInstanceInfo();
        break;
      } catch {
        if (now() - t > 10_000) throw new Error('the stand-in did not answer within 10 s');
        await sleep(2);
      }
    }
    out.push(now() - t);
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
  }
  return out;
}

/** CPU time of a process and of its reaped children, in ms, from /proc/<pid>/stat fields 14-17. */
function cpuMs(pid: number, tickMs: number): { self: number; children: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // f[0] is field 3 (state): utime is field 14, so f[11].
  const [utime, stime, cutime, cstime] = f.slice(11, 15).map(Number);
  return { self: (utime + stime) * tickMs, children: (cutime + cstime) * tickMs };
}

function run(argv: string[]): string {
  const r = spawnSync(argv[0], argv.slice(1), { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${argv.join(' ')} exited ${r.status}: ${r.stderr}`);
  return r.stdout;
}

function findOnPath(name: string): string {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    try {
      accessSync(join(dir, name), constants.X_OK);
      return join(dir, name);
    } catch {
      // not here
    }
  }
  throw new Error(`${name} is not on PATH`);
}

/** A throwaway system user with NOPASSWD sudo for banger's privileged tools, sh and the stand-in. */
class SudoUser {
  readonly name = `banger-b${randomBytes(3).toString('hex')}`;
  readonly sudoers = `/etc/sudoers.d/${this.name}`;
  uid = -1;
  gid = -1;

  create(): void {
    run(['useradd', '--system', '--no-create-home', '--shell', '/usr/sbin/nologin', this.name]);
    this.uid = Number(run(['id', '-u', this.name]).trim());
    this.gid = Number(run(['id', '-g', this.name]).trim());
    const commands = [...PRIVILEGED_TOOLS, 'sh'].map(findOnPath);
    writeFileSync(this.sudoers, `${this.name} ALL=(root) NOPASSWD: ${[...commands, join(STANDIN_DIR, 'firecracker')].join(', ')}\n`, { mode: 0o440 });
    run(['visudo', '-c']);
  }

  get prefix(): string[] {
    return ['setpriv', `--reuid=${this.uid}`, `--regid=${this.gid}`, '--clear-groups'];
  }

  remove(): void {
    rmSync(this.sudoers, { force: true });
    if (this.uid < 0) return;
    for (const pid of readdirSync('/proc').filter((n) => /^\d+$/.test(n))) {
      try {
        if (readFileSync(`/proc/${pid}/status`, 'utf8').match(/^Uid:\s+(\d+)/m)?.[1] === String(this.uid)) process.kill(Number(pid), 'SIGKILL');
      } catch {
        // gone
      }
    }
    spawnSync('userdel', [this.name]);
  }
}

interface PhaseLine {
  msg: string;
  opId?: string | null;
  phase?: string;
  elapsedMs?: number;
  method?: string;
  ms?: number;
}

/** Per-phase durations of the operations whose opId starts with prefix: phase -> ms each. */
function phaseDurations(log: string, prefix: string): Map<string, number[]> {
  const byOp = new Map<string, { phases: [string, number][]; total?: number }>();
  for (const line of readFileSync(log, 'utf8').split('\n')) {
    if (!line.includes(prefix)) continue;
    let l: PhaseLine;
    try {
      l = JSON.parse(line);
    } catch {
      continue;
    }
    if (!l.opId?.startsWith(prefix)) continue;
    const op = byOp.get(l.opId) ?? { phases: [] };
    byOp.set(l.opId, op);
    if (l.msg === 'phase' && l.phase && typeof l.elapsedMs === 'number') op.phases.push([l.phase, l.elapsedMs]);
    if (l.msg === 'request' && typeof l.ms === 'number') op.total = l.ms;
  }
  const out = new Map<string, number[]>();
  const add = (k: string, v: number) => out.set(k, [...(out.get(k) ?? []), v]);
  for (const op of byOp.values()) {
    const ps = op.phases.sort((a, b) => a[1] - b[1]);
    if (ps.length === 0) continue;
    add('(before the first phase)', ps[0][1]);
    for (let i = 0; i + 1 < ps.length; i++) add(ps[i][0], ps[i + 1][1] - ps[i][1]);
    if (op.total !== undefined) {
      add('(after the last phase)', op.total - ps[ps.length - 1][1]);
      add('= request total', op.total);
    }
  }
  return out;
}

async function deleteAll(client: DaemonClient): Promise<void> {
  const vms = await client.call<VmView[]>('vm.list');
  await Promise.all(vms.map((vm) => client.call('vm.delete', { vm: vm.id, force: true })));
}

async function main(): Promise<void> {
  const skip = privilegedSkipReason();
  if (skip) {
    console.log(`skipped: ${skip} (the lifecycle benchmark makes TAPs and iptables rules in a network namespace)`);
    return;
  }
  const cores = availableParallelism();
  const user = process.argv.includes('--unprivileged') ? new SudoUser() : null;
  const ns = new HostNetns();
  // The stand-in by its path: sudo finds commands through its secure_path only.
  const env = new BangerEnv({ BANGER_BUILD_ID: 'bench-lifecycle', BANGER_FIRECRACKER: join(STANDIN_DIR, 'firecracker') });
  try {
    const files = makeImageFiles(join(env.dir, 'src'), 16);
    user?.create();
    if (user) run(['chown', '-R', `${user.uid}:${user.gid}`, env.dir]);
    const asUser = user?.prefix ?? [];
    for (const args of [['daemon', 'start'], ['image', 'add', 'base', '--kernel', files.kernel, '--rootfs', files.rootfs]]) {
      const r = env.cli(args, { prefix: [...ns.prefix, ...asUser] });
      if (r.code !== 0) throw new Error(`banger ${args.join(' ')} failed: ${r.stderr}`);
    }
    const daemonPid = env.daemonPid();
    const client = new DaemonClient(env.socket, 60_000);
    const create = (name: string, opId: string) => client.call<VmView>('vm.create', { name, image: 'base' }, { opId });
    console.log(`host: ${cores} cores (os.availableParallelism), ${N} VMs per run, copy root disks of a 16 MiB ext4 image`);
    console.log(user ? `daemon and CLI as ${user.name} (uid ${user.uid}), privileged tools through sudo -n` : 'daemon and CLI as root');

    // Warm-up (strategy choice, first-call costs), not counted.
    await create('warm', 'bench-warm-0');
    await deleteAll(client);

    const standin = await timeStandinAlone(env.dir, 10);
    console.log(`stand-in alone, spawn -> API answers:       ${summary(standin)}`);

    // 1. One after another, through the daemon API.
    const api: number[] = [];
    for (let i = 0; i < N; i++) {
      const t = now();
      const vm = await create(`seq-${i}`, `bench-seq-${i}`);
      api.push(now() - t);
      if (vm.state !== 'running') throw new Error(`seq-${i} is ${vm.state}`);
    }
    console.log(`create -> running, sequential, daemon API:  ${summary(api)}`);
    await deleteAll(client);

    // 2. One after another, through the CLI (a new node process each, as a user runs it).
    const cli: number[] = [];
    for (let i = 0; i < N; i++) {
      const t = now();
      const argv = [...asUser, process.execPath, join(process.cwd(), 'bin/banger'), 'vm', 'create', '--name', `cli-${i}`, '--image', 'base', '--json'];
      const r = spawnSync(argv[0], argv.slice(1), { env: env.env, encoding: 'utf8' });
      cli.push(now() - t);
      if (r.status !== 0 || JSON.parse(r.stdout).state !== 'running') throw new Error(`banger vm create cli-${i} failed: ${r.stderr}`);
    }
    if (env.daemonPid() !== daemonPid) throw new Error('the daemon was replaced during the CLI run (outside the namespace); rerun');
    console.log(`create -> running, sequential, CLI:         ${summary(cli)}`);
    await deleteAll(client);

    // 3. N at once; CPU accounted to the daemon, the host tools it ran (reaped children) and the stand-ins.
    const tickMs = 1000 / Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim() || 100);
    const cpu0 = cpuMs(daemonPid!, tickMs);
    const t = now();
    const vms = await Promise.all(Array.from({ length: N }, (_, i) => create(`par-${i}`, `bench-par-${i}`)));
    const wall = now() - t;
    const cpu1 = cpuMs(daemonPid!, tickMs);
    if (vms.some((v) => v.state !== 'running')) throw new Error('a concurrent create did not end running');
    let standinCpu = 0;
    for (const vm of vms) standinCpu += cpuMs((await client.call<{ pid: number }>('vm.get', { vm: vm.id })).pid, tickMs).self;
    const perSecond = (N * 1000) / wall;
    const perCore = perSecond / cores;
    console.log(`${N} concurrent creates:                      ${fmt(wall)} wall, ${perSecond.toFixed(1)} VMs/s`);
    console.log(
      `per core:                                   ${perCore.toFixed(2)} VMs/s/core (target >= ${TARGET_PER_CORE}): ${perCore >= TARGET_PER_CORE ? 'met' : 'MISSED'}`,
    );
    const daemonCpu = (cpu1.self - cpu0.self) / N;
    const toolsCpu = (cpu1.children - cpu0.children) / N;
    console.log(
      `CPU per VM in that run:                     bangerd ${daemonCpu.toFixed(1)} ms, host tools it ran${user ? ' (with sudo)' : ''} ${toolsCpu.toFixed(1)} ms, ` +
        `stand-in ${(standinCpu / N).toFixed(1)} ms (of ${((wall * cores) / N).toFixed(1)} ms of cores per VM)`,
    );
    const own = daemonCpu + toolsCpu;
    console.log(`banger's own CPU per VM:                    ${own.toFixed(1)} ms -> about ${(1000 / own).toFixed(1)} VMs/s per core were the VMM free`);
    console.log(`CPU-bound estimate with the stand-in:       ${(1000 / (own + standinCpu / N)).toFixed(1)} VMs/s per core on an otherwise idle host`);
    console.log(`load average during the run:                ${readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')}`);
    await deleteAll(client);

    for (const [title, prefix] of [
      ['sequential', 'bench-seq-'],
      ['concurrent', 'bench-par-'],
    ]) {
      console.log(`\nwhere a create's time goes (${title}, daemon log; median / p95 over ${N}):`);
      for (const [phase, xs] of phaseDurations(env.log, prefix)) {
        console.log(`  ${phase.padEnd(26)} ${fmt(quantile(xs, 0.5))}  ${fmt(quantile(xs, 0.95))}`);
      }
    }
  } finally {
    await env.cleanup();
    ns.destroy();
    user?.remove();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
