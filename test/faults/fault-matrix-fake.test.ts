// The fault matrix on the fake host: for create, start, stop, restart and rm, with the dm and the
// copy root disk, every runner call of a clean run is failed in a run of its own (by command prefix
// and call number), and every Firecracker PUT is answered 400 by the stand-in. Each run checks the
// error, the VM's state against its process and the fake host's loop/dm/TAP/iptables tables, and
// that `vm rm --force` afterwards leaves nothing at all.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { makeImageFiles, tmp } from '../helpers/banger-env.js';
import { FakeFaultHost, OPS, runFaultMatrix, type ImageFiles } from '../helpers/fault-host.js';

const skip = process.getuid?.() !== 0 ? 'not root (the stand-in sees the fake TAPs through a private mount namespace)' : null;
if (skip) console.warn(`skipping the fake-host fault matrix: ${skip}`);
const verbose = process.env.FAULTS_VERBOSE === '1';

describe.skipIf(skip !== null)('fault matrix on the fake host', () => {
  let dir: string;
  let image: ImageFiles;
  const totals: Record<string, number> = {};

  beforeAll(() => {
    dir = tmp('bgfm-');
    image = makeImageFiles(join(dir, 'image'), 8);
  });
  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
    console.log(`fault points on the fake host: ${JSON.stringify(totals)}, total ${Object.values(totals).reduce((a, b) => a + b, 0)}`);
  });

  for (const strategy of ['dm', 'copy'] as const) {
    for (const op of OPS) {
      it(`${op} (${strategy}): every failed host call or Firecracker call leaves a consistent VM and nothing unowned`, async () => {
        const r = await runFaultMatrix(() => new FakeFaultHost(), strategy, image, op, verbose ? (l) => console.log(l) : undefined);
        totals[`${op}/${strategy}`] = r.points;
        if (r.heldByError) console.log(`${op}/${strategy}: ${r.heldByError} failures left the VM in error still holding journaled handles (released by the next start or rm)`);
        if (r.absorbed.length) console.log(`${op}/${strategy}: succeeded despite the fault: ${r.absorbed.length}\n  ${r.absorbed.join('\n  ')}`);
        expect(r.failures).toEqual([]);
        expect(r.points).toBeGreaterThan(3);
      }, 300_000);
    }
  }
});
