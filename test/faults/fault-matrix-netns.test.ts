// The fault matrix on real host tools: ip, iptables, sysctl, cp, truncate, e2fsck and resize2fs
// run for real inside a throwaway network namespace (one per run), with the copy root disk (this
// part makes no loop or mapper device; the dm strategy is covered on the fake host). Every runner
// call of a clean create, start, stop, restart and rm is failed in a run of its own, and every
// Firecracker PUT is answered 400 by the stand-in. Each run checks the namespace's links and
// iptables rules against the journal, and that `vm rm --force` afterwards leaves nothing.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { makeImageFiles, tmp } from '../helpers/banger-env.js';
import { privilegedSkipReason } from '../helpers/netns.js';
import { NetnsFaultHost, OPS, runFaultMatrix, type ImageFiles } from '../helpers/fault-host.js';

const skip = privilegedSkipReason();
if (skip) console.warn(`skipping the real-host fault matrix: ${skip}`);
const verbose = process.env.FAULTS_VERBOSE === '1';

describe.skipIf(skip !== null)('fault matrix on real tools in a network namespace', () => {
  let dir: string;
  let image: ImageFiles;
  const totals: Record<string, number> = {};

  beforeAll(() => {
    dir = tmp('bgfn-');
    image = makeImageFiles(join(dir, 'image'), 8);
  });
  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
    console.log(`fault points on real tools: ${JSON.stringify(totals)}, total ${Object.values(totals).reduce((a, b) => a + b, 0)}`);
  });

  for (const op of OPS) {
    it(`${op} (copy): every failed host call or Firecracker call leaves a consistent VM, and no TAP or rule that no VM owns`, async () => {
      const r = await runFaultMatrix(() => new NetnsFaultHost(), 'copy', image, op, verbose ? (l) => console.log(l) : undefined);
      totals[op] = r.points;
      if (r.heldByError) console.log(`${op}: ${r.heldByError} failures left the VM in error still holding journaled handles (released by the next start or rm)`);
      if (r.absorbed.length) console.log(`${op}: succeeded despite the fault: ${r.absorbed.length}\n  ${r.absorbed.join('\n  ')}`);
      expect(r.failures).toEqual([]);
      expect(r.points).toBeGreaterThan(3);
    }, 300_000);
  }
});
