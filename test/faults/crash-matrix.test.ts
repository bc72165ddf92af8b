// The crash matrix: the real daemon process (through the built CLI, inside a throwaway network
// namespace, with the Firecracker stand-in) is SIGKILLed at every step boundary of create, start,
// stop and restart (BANGER_TEST_PAUSE_AT holds it there), then started again by the next CLI
// command. Recovery must lose no VM record, adopt the running VM beside it, leave the interrupted
// VM in a sensible state, and leave no TAP, rule, process, socket or journal row that no running
// VM owns; the VM must then start again and be removable without a trace.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { BangerEnv, makeImageFiles, isAlive } from '../helpers/banger-env.js';
import { HostNetns, privilegedSkipReason } from '../helpers/netns.js';
import { firecrackersUnder, standinBinary } from '../helpers/fault-host.js';
import { isSameProcess } from '../../src/firecracker/proc.js';

const skip = privilegedSkipReason();
if (skip) console.warn(`skipping the crash matrix: ${skip}`);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

type Op = 'create' | 'start' | 'stop' | 'restart';
const START_STEPS = ['disk.attach', 'net.setup', 'vmm.spawn', 'vmm.configure', 'vmm.start'];

/** Every step boundary of each operation, and the states recovery may leave the VM in. */
const POINTS: { op: Op; step: string; states: string[] }[] = [
  // The disk was being made: recovery finishes the create.
  { op: 'create', step: 'disk.copy', states: ['stopped'] },
  // A start was under way: recovery rolls it back.
  ...START_STEPS.map((step) => ({ op: 'create' as const, step, states: ['error', 'stopped'] })),
  ...START_STEPS.map((step) => ({ op: 'start' as const, step, states: ['error', 'stopped'] })),
  // The guest had been asked to stop: recovery finishes the stop.
  { op: 'stop', step: 'vmm.stopping', states: ['stopped'] },
  { op: 'restart', step: 'vmm.stopping', states: ['stopped'] },
  ...START_STEPS.map((step) => ({ op: 'restart' as const, step, states: ['error', 'stopped'] })),
];

interface Vm {
  id: string;
  name: string;
  state: string;
  pid: number | null;
  tap: string;
  nat: boolean;
  lastError: string | null;
}

describe.skipIf(skip !== null)('crash matrix: the daemon SIGKILLed at every step boundary', () => {
  let ns: HostNetns;
  let env: BangerEnv;
  let keeper: Vm;
  const names: string[] = [];

  const cli = (args: string[], extra: Record<string, string> = {}) => env.cli(args, { prefix: ns.prefix, env: extra });
  const json = <T = any>(args: string[]): T => env.json<T>(args, { prefix: ns.prefix });
  const pausedCount = (step: string) => (existsSync(env.log) ? readFileSync(env.log, 'utf8').split(`paused at ${step}`).length - 1 : 0);

  /** Lists VMs once recovery is over (the new daemon answers while it still recovers). */
  async function settledVms(): Promise<Vm[]> {
    const deadline = Date.now() + 15_000;
    for (;;) {
      const vms = json<Vm[]>(['vm', 'ls']);
      if (!vms.some((v) => ['creating', 'starting', 'stopping'].includes(v.state))) return vms;
      if (Date.now() > deadline) throw new Error(`recovery did not settle: ${JSON.stringify(vms.map((v) => [v.name, v.state]))}`);
      await sleep(50);
    }
  }

  /** What the namespace, /proc, the runtime directory and the journal hold that no running VM owns. */
  function unowned(vms: Vm[]): string[] {
    const running = new Map(vms.filter((v) => v.state === 'running').map((v) => [v.id, v]));
    const out: string[] = [];
    for (const link of ns.links()) {
      if (['lo', ns.uplink, 'up0peer'].includes(link)) continue;
      if (![...running.values()].some((v) => v.tap === link)) out.push(`TAP ${link}`);
    }
    for (const rule of ns.rules()) {
      const id = /banger:([0-9a-f]+)/.exec(rule)?.[1] ?? '';
      if (!running.get(id)?.nat) out.push(`rule ${rule}`);
    }
    for (const p of firecrackersUnder(env.dir)) if (running.get(p.vmId)?.pid !== p.pid) out.push(`firecracker pid ${p.pid} --id ${p.vmId}`);
    const sockDir = join(env.env.XDG_RUNTIME_DIR, 'banger', 'vms');
    for (const f of existsSync(sockDir) ? readdirSync(sockDir) : []) if (!running.has(f.replace(/\.sock$/, ''))) out.push(`socket ${f}`);
    const db = new Database(env.database, { readonly: true, fileMustExist: true });
    try {
      const rows = db.prepare('SELECT vm_id, kind, handle FROM resources').all() as { vm_id: string; kind: string; handle: string }[];
      for (const r of rows) if (r.kind !== 'file' && !running.has(r.vm_id)) out.push(`journal ${r.vm_id} ${r.kind} ${r.handle}`);
    } finally {
      db.close();
    }
    for (const v of running.values()) {
      const procs = firecrackersUnder(env.dir).filter((p) => p.vmId === v.id);
      if (v.pid === null || !procs.some((p) => p.pid === v.pid && isSameProcess(p.pid, p.startTime, v.id))) out.push(`running VM ${v.name} without its firecracker`);
      if (!ns.links().includes(v.tap)) out.push(`running VM ${v.name} without its TAP`);
    }
    return out;
  }

  beforeAll(async () => {
    ns = new HostNetns();
    env = new BangerEnv({ BANGER_BUILD_ID: 'crash-matrix', BANGER_FIRECRACKER: await standinBinary() });
    const files = makeImageFiles(join(env.dir, 'src'), 8);
    const r = cli(['image', 'add', 'base', '--kernel', files.kernel, '--rootfs', files.rootfs, '--initrd', files.initrd]);
    expect(r.code, r.stderr).toBe(0);
    keeper = json<Vm>(['vm', 'create', '--name', 'keeper', '--image', 'base']);
    expect(keeper.state).toBe('running');
    names.push('keeper');
  });

  afterAll(async () => {
    await env?.cleanup();
    ns?.destroy();
    console.log(`crash points: ${POINTS.length}`);
  });

  for (const point of POINTS) {
    it(`${point.op} killed at ${point.step}: recovery leaves the VM ${point.states.join(' or ')} and nothing unowned`, async () => {
      const name = `${point.op}-${point.step.replace('.', '-')}`;
      // What must exist before the operation, made by a daemon that does not pause.
      if (point.op === 'start') expect(cli(['vm', 'create', '--name', name, '--image', 'base', '--no-start']).code).toBe(0);
      if (point.op === 'stop' || point.op === 'restart') expect(json<Vm>(['vm', 'create', '--name', name, '--image', 'base']).state).toBe('running');
      names.push(name);
      const before = json<Vm[]>(['vm', 'ls']);

      // The next command starts a daemon that pauses at the step.
      expect(cli(['daemon', 'stop']).code).toBe(0);
      const seen = pausedCount(point.step);
      const args = point.op === 'create' ? ['vm', 'create', '--name', name, '--image', 'base'] : ['vm', point.op, name];
      const pending = env.cliAsync(args, { prefix: ns.prefix, env: { BANGER_TEST_PAUSE_AT: point.step } });
      const deadline = Date.now() + 15_000;
      while (pausedCount(point.step) === seen) {
        if (Date.now() > deadline) throw new Error(`the daemon never paused at ${point.step}; CLI: ${JSON.stringify(await Promise.race([pending, sleep(10).then(() => 'still running')]))}`);
        await sleep(20);
      }
      const daemonPid = env.daemonPid()!;
      process.kill(daemonPid, 'SIGKILL');
      const interrupted = await pending;
      expect(interrupted.code, interrupted.stderr).not.toBe(0);
      // SIGKILL is delivered at once, but the process needs a moment to be gone.
      for (let i = 0; i < 100 && isAlive(daemonPid); i++) await sleep(20);
      expect(isAlive(daemonPid)).toBe(false);

      // Any command starts a daemon again; it recovers.
      const vms = await settledVms();
      expect(vms.map((v) => v.name).sort()).toEqual([...names].sort());
      for (const v of before) expect(vms.find((x) => x.id === v.id), `VM ${v.name} lost`).toBeDefined();
      const vm = vms.find((v) => v.name === name)!;
      expect(point.states).toContain(vm.state);
      expect(vm.pid).toBeNull();
      if (vm.state === 'error') expect(vm.lastError).toMatch(/interrupted|daemon restart/);
      const adopted = vms.find((v) => v.name === 'keeper')!;
      expect(adopted).toMatchObject({ state: 'running', pid: keeper.pid });
      expect(unowned(vms)).toEqual([]);

      // The VM is usable again, and removing it leaves nothing.
      const started = json<Vm>(['vm', 'start', name]);
      expect(started.state).toBe('running');
      const rm = cli(['vm', 'rm', '--force', name]);
      expect(rm.code, rm.stderr).toBe(0);
      names.splice(names.indexOf(name), 1);
      expect(unowned(json<Vm[]>(['vm', 'ls']))).toEqual([]);
      expect(existsSync(join(env.stateDir, 'vms', vm.id))).toBe(false);
    }, 60_000);
  }

  it('a removal racing the recovery right after a crash neither kills the new daemon nor leaks', async () => {
    // slow: an interrupted stop, whose recovery kills a process and removes rules; then gone: removed meanwhile.
    for (const n of ['slow', 'gone']) expect(json<Vm>(['vm', 'create', '--name', n, '--image', 'base']).state).toBe('running');
    const gone = json<Vm>(['vm', 'show', 'gone']);
    expect(cli(['daemon', 'stop']).code).toBe(0);
    const seen = pausedCount('vmm.stopping');
    const pending = env.cliAsync(['vm', 'stop', 'slow'], { prefix: ns.prefix, env: { BANGER_TEST_PAUSE_AT: 'vmm.stopping' } });
    while (pausedCount('vmm.stopping') === seen) await sleep(20);
    const killed = env.daemonPid()!;
    process.kill(killed, 'SIGKILL');
    await pending;
    for (let i = 0; i < 100 && isAlive(killed); i++) await sleep(20);

    // The first command after the crash starts a daemon and removes "gone" while it recovers "slow".
    const rm = cli(['vm', 'rm', '--force', 'gone']);
    expect(rm.code, rm.stderr).toBe(0);
    const served = env.daemonPid()!;
    await sleep(1000);
    expect(isAlive(served), `the daemon that recovered died: ${readFileSync(env.log, 'utf8').split('\n').slice(-5).join('\n')}`).toBe(true);
    const vms = await settledVms();
    expect(env.daemonPid()).toBe(served);
    expect(vms.find((v) => v.name === 'gone')).toBeUndefined();
    expect(vms.find((v) => v.name === 'slow')).toMatchObject({ state: 'stopped', pid: null });
    expect(isAlive(gone.pid!)).toBe(false);
    expect(unowned(vms)).toEqual([]);
    expect(cli(['vm', 'rm', 'slow']).code).toBe(0);
  }, 60_000);

  it('the VM beside them ran through every crash and stops cleanly', () => {
    expect(isAlive(keeper.pid!)).toBe(true);
    expect(json<Vm>(['vm', 'stop', 'keeper']).state).toBe('stopped');
    expect(unowned(json<Vm[]>(['vm', 'ls']))).toEqual([]);
  });
});
