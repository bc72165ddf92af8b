// How long preparing a VM root disk takes for a 256 MiB and a 4 GiB image (sparse files made with
// mkfs.ext4), per strategy: the copy strategy for real; the dm strategy for real where the kernel
// has device-mapper snapshots, otherwise only through the in-memory fake, which is labelled as such
// and measures banger's own orchestration, not the kernel. Median of a few runs, and the ratio
// 4 GiB / 256 MiB. Everything lives in a temp dir that is removed at the end.
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { MemoryJournal } from '../src/core/memory-journal.js';
import type { Runner } from '../src/core/ports.js';
import { prepareCopyDisk, removeCopyDisk } from '../src/host/copy.js';
import { hasSnapshotTarget } from '../src/host/dm.js';
import { listLoops } from '../src/host/loop.js';
import { ExecRunner } from '../src/host/runner.js';
import { setupSnapshot, teardownSnapshot } from '../src/host/snapshot.js';
import { installFakeDisk } from '../test/fakes/fake-disk.js';
import { FakeRunner } from '../test/fakes/fake-runner.js';

const RUNS = 5;
const MiB = 1024 ** 2;
const SIZES = [
  { label: '256 MiB', bytes: 256 * MiB },
  { label: '4 GiB', bytes: 4096 * MiB },
];
const VM = 'be0c4000d15c';

const real = new ExecRunner();

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

/** Times `once` RUNS times; `after` (untimed) cleans up after each run. */
async function time(runs: number, once: () => Promise<void>, after: () => Promise<void>): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    try {
      await once();
      out.push(performance.now() - t0);
    } finally {
      await after();
    }
  }
  return out;
}

interface Row {
  strategy: string;
  medians: number[];
  runs: number[][];
}

function printRows(rows: Row[]): void {
  const head = ['strategy', ...SIZES.map((s) => `median ${s.label}`), 'ratio 4G/256M', 'runs (ms)'];
  console.log(head.join(' | '));
  for (const r of rows) {
    const ratio = r.medians[1] / r.medians[0];
    console.log(
      [
        r.strategy,
        ...r.medians.map((m) => `${m.toFixed(1)} ms`),
        `${ratio.toFixed(2)}x`,
        r.runs.map((xs) => xs.map((x) => x.toFixed(0)).join(',')).join(' / '),
      ].join(' | '),
    );
  }
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'banger-bench-rootdisk-'));
  try {
    const fsType = (await real.run(['stat', '-f', '-c', '%T', dir])).stdout.trim();
    console.log(`temp dir ${dir} on ${fsType}; ${RUNS} runs each; disk size = image size`);
    const images: string[] = [];
    for (const s of SIZES) {
      const image = join(dir, `image-${s.bytes}.ext4`);
      await real.run(['truncate', '-s', String(s.bytes), image]);
      await real.run(['mkfs.ext4', '-q', '-F', image], { timeoutMs: 120_000 });
      images.push(image);
      const allocated = (await real.run(['du', '-k', image])).stdout.split(/\s/)[0];
      console.log(`${s.label} image: ${(Number(allocated) / 1024).toFixed(1)} MiB allocated after mkfs.ext4`);
    }

    const rows: Row[] = [];

    // copy strategy, real tools.
    const copyRuns: number[][] = [];
    for (const [i, s] of SIZES.entries()) {
      const journal = new MemoryJournal();
      const diskFile = join(dir, 'vm-rootfs.ext4');
      copyRuns.push(
        await time(RUNS, async () => {
          await prepareCopyDisk({ runner: real, journal }, { vmId: VM, imageRootfs: images[i], diskFile, diskSizeBytes: s.bytes });
        }, () => removeCopyDisk({ journal }, VM, diskFile)),
      );
    }
    rows.push({ strategy: 'copy (real cp --reflink=auto --sparse=always)', medians: copyRuns.map(median), runs: copyRuns });

    // copy strategy with a disk 1 GiB larger than the image: adds truncate, e2fsck -fy and resize2fs.
    const grownRuns: number[][] = [];
    for (const [i, s] of SIZES.entries()) {
      const journal = new MemoryJournal();
      const diskFile = join(dir, 'vm-rootfs.ext4');
      grownRuns.push(
        await time(RUNS, async () => {
          await prepareCopyDisk({ runner: real, journal }, { vmId: VM, imageRootfs: images[i], diskFile, diskSizeBytes: s.bytes + 1024 * MiB });
        }, () => removeCopyDisk({ journal }, VM, diskFile)),
      );
    }
    rows.push({ strategy: 'copy, disk +1 GiB (real, with e2fsck + resize2fs)', medians: grownRuns.map(median), runs: grownRuns });

    // dm strategy: real when the kernel has it, else the fake only.
    const hasRealDm = existsSync('/dev/mapper/control') && (await hasSnapshotTarget(real));
    let runner: Runner = real;
    let label = 'dm (real device-mapper, setup only)';
    if (!hasRealDm) {
      const fake = new FakeRunner();
      installFakeDisk(fake);
      runner = fake;
      label = 'dm through the FAKE tools (not a real timing)';
      console.log('device-mapper snapshots are not available on this host (no dm driver / snapshot target):');
      console.log('  the dm rows below run banger\'s orchestration against the in-memory fake; they say nothing about');
      console.log('  the kernel cost of losetup/dmsetup and must not be read as real dm timings.');
    }
    const dmRuns: number[][] = [];
    for (const [i, s] of SIZES.entries()) {
      const journal = new MemoryJournal();
      const cowFile = join(dir, 'vm.cow');
      const files = { imageRootfs: images[i], cowFile };
      const runs: number[] = [];
      for (let r = 0; r < RUNS; r++) {
        rmSync(cowFile, { force: true });
        const t0 = performance.now();
        try {
          await setupSnapshot({ runner, journal }, { vmId: VM, imageRootfs: images[i], cowFile, diskSizeBytes: s.bytes });
          runs.push(performance.now() - t0);
        } finally {
          await teardownSnapshot({ runner, journal }, VM, files);
        }
      }
      dmRuns.push(runs);
    }
    rows.push({ strategy: label, medians: dmRuns.map(median), runs: dmRuns });

    printRows(rows);

    const left = (await listLoops(real)).filter((l) => l.backingFile.startsWith(dir));
    if (left.length > 0) throw new Error(`loop devices left behind: ${left.map((l) => l.name).join(', ')}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
