// The crash matrix on the fake host, for the dm root disk (whose loops and mapper devices this
// kernel cannot make for real) and the copy one: an in-process daemon paused at every step boundary
// of create, start, stop and restart is abandoned there (the socket, database and watcher closed, the
// operation never resumed: what a SIGKILL leaves), and a new daemon on the same directories and fake
// host recovers. The fake's loop, mapper, TAP and iptables tables must then hold nothing that no VM
// owns, no record may be lost, the running bystander is adopted, and the VM starts again.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { makeImageFiles, tmp } from '../helpers/banger-env.js';
import { DaemonHarness, FakeFaultHost, findProblems, leftovers, forEachConcurrently, type ImageFiles } from '../helpers/fault-host.js';

const skip = process.getuid?.() !== 0 ? 'not root (the stand-in sees the fake TAPs through a private mount namespace)' : null;
if (skip) console.warn(`skipping the fake-host crash matrix: ${skip}`);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const START_STEPS = ['disk.attach', 'net.setup', 'vmm.spawn', 'vmm.configure', 'vmm.start'];
type Op = 'create' | 'start' | 'stop' | 'restart';

function pointsFor(strategy: 'dm' | 'copy'): { op: Op; step: string; states: string[] }[] {
  return [
    // Only the copy strategy makes the disk at create.
    ...(strategy === 'copy' ? [{ op: 'create' as const, step: 'disk.copy', states: ['stopped'] }] : []),
    ...START_STEPS.map((step) => ({ op: 'create' as const, step, states: ['error', 'stopped'] })),
    ...START_STEPS.map((step) => ({ op: 'start' as const, step, states: ['error', 'stopped'] })),
    { op: 'stop', step: 'vmm.stopping', states: ['stopped'] },
    { op: 'restart', step: 'vmm.stopping', states: ['stopped'] },
    ...START_STEPS.map((step) => ({ op: 'restart' as const, step, states: ['error', 'stopped'] })),
  ];
}

/** One crash point: what is wrong after recovery, or an empty list. */
async function crashAt(strategy: 'dm' | 'copy', image: ImageFiles, op: Op, step: string, states: string[]): Promise<string[]> {
  const h = await DaemonHarness.start(new FakeFaultHost(), strategy, image);
  const problems: string[] = [];
  try {
    await h.ok('vm.create', { name: 'bystander', image: 'base' });
    const diskSizeBytes = h.daemon.deps.store.listImages()[0].rootfsSizeBytes + 8 * 1024 * 1024;
    if (op !== 'create') await h.ok('vm.create', { name: 'target', image: 'base', diskSizeBytes, start: op !== 'start' });
    const bystander = h.daemon.deps.store.listVms().find((v) => v.name === 'bystander')!;
    const ids = h.daemon.deps.store.listVms().map((v) => v.id);

    h.daemon.runtime.options.pauseAt = step;
    const body = op === 'create' ? { name: 'target', image: 'base', diskSizeBytes } : { vm: 'target' };
    const pending = h.api(op === 'create' ? 'vm.create' : `vm.${op}`, body).catch((err: Error) => err);
    const deadline = Date.now() + 10_000;
    while (!(existsSync(h.logFile) && readFileSync(h.logFile, 'utf8').includes(`paused at ${step}`))) {
      if (Date.now() > deadline) return [`never paused at ${step}: ${JSON.stringify(await Promise.race([pending, sleep(10)]))}`];
      await sleep(10);
    }
    await h.crashAndRestart();
    const answer = await pending;
    if (!(answer instanceof Error)) problems.push(`the interrupted request was answered: ${answer.status} ${answer.raw}`);

    const vms = h.daemon.deps.store.listVms();
    for (const id of ids) if (!vms.some((v) => v.id === id)) problems.push(`VM ${id} was lost`);
    const target = vms.find((v) => v.name === 'target');
    if (!target) problems.push('the interrupted VM was lost');
    else if (!states.includes(target.state)) problems.push(`the interrupted VM is ${target.state}, not ${states.join(' or ')}`);
    const adopted = vms.find((v) => v.id === bystander.id);
    if (adopted?.state !== 'running' || adopted.pid !== bystander.pid) problems.push(`the bystander was not adopted: ${adopted?.state} pid ${adopted?.pid} (was ${bystander.pid})`);
    problems.push(...findProblems(h));

    // Usable again, and removable without a trace.
    const started = await h.api('vm.start', { vm: 'target' });
    if (started.status !== 200) problems.push(`vm start after recovery answered ${started.status}: ${started.raw}`);
    else problems.push(...findProblems(h).map((p) => `after vm start: ${p}`));
    for (const vm of h.daemon.deps.store.listVms()) {
      const r = await h.api('vm.delete', { vm: vm.id, force: true });
      if (r.status !== 200) problems.push(`vm rm --force ${vm.name} answered ${r.status}: ${r.raw}`);
    }
    problems.push(...leftovers(h).map((l) => `after rm --force: ${l}`));
    return problems;
  } finally {
    await h.stop();
  }
}

describe.skipIf(skip !== null)('crash matrix on the fake host: a daemon abandoned at every step boundary', () => {
  let dir: string;
  let image: ImageFiles;
  let points = 0;

  beforeAll(() => {
    dir = tmp('bgcf-');
    image = makeImageFiles(join(dir, 'image'), 8);
  });
  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
    console.log(`crash points on the fake host: ${points}`);
  });

  for (const strategy of ['dm', 'copy'] as const) {
    it(`${strategy}: recovery after a crash at any step loses no VM, adopts the running one, and leaves nothing unowned`, async () => {
      const failures: string[] = [];
      const all = pointsFor(strategy);
      await forEachConcurrently(all, 4, async (p) => {
        for (const problem of await crashAt(strategy, image, p.op, p.step, p.states)) failures.push(`${strategy} ${p.op} at ${p.step}: ${problem}`);
      });
      points += all.length;
      expect(failures).toEqual([]);
    }, 120_000);
  }
});
