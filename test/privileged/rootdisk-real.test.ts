// Root disks on the real host: real loop devices, mkfs.ext4, e2fsck, resize2fs and debugfs, and
// device-mapper when the kernel has it (otherwise the dm setup must fail cleanly at snapshot.dm).
// Needs root and /dev/loop-control; skipped with the reason printed otherwise. Every test works in
// its own temp dir, and afterEach detaches whatever loop device still points into it.
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { MemoryJournal } from '../../src/core/memory-journal.js';
import { getSectors } from '../../src/host/blockdev.js';
import { prepareCopyDisk } from '../../src/host/copy.js';
import { dmInfo, hasSnapshotTarget, removeDm } from '../../src/host/dm.js';
import { attachLoop, detachLoop, findLoopsByBackingFile, listLoops } from '../../src/host/loop.js';
import { readFilesystemSize } from '../../src/host/rootdisk.js';
import { ExecRunner } from '../../src/host/runner.js';
import { setupSnapshot, teardownSnapshot } from '../../src/host/snapshot.js';

const runner = new ExecRunner();
const MiB = 1024 ** 2;
const IMAGE_BYTES = 32 * MiB;

function whySkip(): string | null {
  if (process.platform !== 'linux') return 'not Linux';
  if (process.getuid?.() !== 0) return 'not root';
  if (!existsSync('/dev/loop-control')) return '/dev/loop-control is missing';
  return null;
}
const skipReason = whySkip();
if (skipReason) console.warn(`skipping real root disk tests: ${skipReason}`);

// libdevmapper creates /dev/mapper/control even when the kernel has no driver, so ask dmsetup too.
const hasDm = skipReason === null && existsSync('/dev/mapper/control') && (await hasSnapshotTarget(runner));
if (skipReason === null && !hasDm) {
  console.warn('no device-mapper snapshot target here: the real dm snapshot test is skipped, the no-dm rollback tests run');
}

let dir: string;
let image: string;
let imageSha: string;
let vmId: string;

function sha256(file: string): string {
  return createHash('sha256').update(readFileSync(file)).digest('hex');
}

async function loopsInTestDir(): Promise<string[]> {
  return (await listLoops(runner)).filter((l) => l.backingFile.startsWith(dir)).map((l) => l.name);
}

describe.skipIf(skipReason !== null)('root disks on real loop devices', () => {
  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'banger-rootdisk-real-'));
    vmId = randomBytes(6).toString('hex');
    const content = join(dir, 'content');
    mkdirSync(content);
    writeFileSync(join(content, 'marker'), 'banger marker\n');
    image = join(dir, 'rootfs.ext4');
    await runner.run(['truncate', '-s', String(IMAGE_BYTES), image]);
    await runner.run(['mkfs.ext4', '-q', '-F', '-b', '4096', '-d', content, image]);
    imageSha = sha256(image);
  });

  afterEach(async () => {
    const leftovers = await loopsInTestDir();
    if (hasDm) {
      for (const name of [`banger-${vmId}`, `banger-${vmId}-origin`]) if (await dmInfo(runner, name)) await removeDm(runner, name);
    }
    for (const dev of leftovers) await detachLoop(runner, dev);
    const imageShaAfter = existsSync(image) ? sha256(image) : null;
    rmSync(dir, { recursive: true, force: true });
    expect(leftovers, 'loop devices left on the test files').toEqual([]);
    expect(imageShaAfter, 'the image file changed').toBe(imageSha);
  });

  it('copy strategy: a disk the size of the image is an exact, sparse copy', async () => {
    const journal = new MemoryJournal();
    const diskFile = join(dir, 'vm-rootfs.ext4');
    const res = await prepareCopyDisk({ runner, journal }, { vmId, imageRootfs: image, diskFile, diskSizeBytes: IMAGE_BYTES });
    expect(res.resized).toBe(false);
    expect(sha256(diskFile)).toBe(imageSha);
    expect(statSync(diskFile).blocks * 512).toBeLessThan(IMAGE_BYTES);
  });

  it('copy strategy: a larger disk gets its file and its ext4 filesystem grown, data intact', async () => {
    const journal = new MemoryJournal();
    const diskFile = join(dir, 'vm-rootfs.ext4');
    const before = await readFilesystemSize(runner, image);
    expect(before.bytes).toBe(IMAGE_BYTES);

    const res = await prepareCopyDisk({ runner, journal }, { vmId, imageRootfs: image, diskFile, diskSizeBytes: 96 * MiB });
    expect(res.resized).toBe(true);
    expect(statSync(diskFile).size).toBe(96 * MiB);
    const after = await readFilesystemSize(runner, diskFile);
    expect(after.bytes).toBe(96 * MiB);
    // Independent look at the superblock, and the filesystem is clean and still holds its files.
    const dump = await runner.run(['dumpe2fs', '-h', diskFile]);
    expect(dump.stdout).toMatch(new RegExp(`^Block count:\\s+${(96 * MiB) / 4096}$`, 'm'));
    await runner.run(['e2fsck', '-fn', diskFile]);
    const cat = await runner.run(['debugfs', '-R', 'cat /marker', diskFile]);
    expect(cat.stdout).toBe('banger marker\n');
  });

  it('loop steps: attach read-only, find by backing file, measure, detach (twice)', async () => {
    const dev = await attachLoop(runner, image, { readOnly: true });
    try {
      expect(dev).toMatch(/^\/dev\/loop\d+$/);
      expect(await findLoopsByBackingFile(runner, image)).toContain(dev);
      const row = (await listLoops(runner)).find((l) => l.name === dev);
      expect(row).toMatchObject({ backingFile: image, isReadOnly: true });
      expect(await getSectors(runner, dev)).toBe(IMAGE_BYTES / 512);
      // A read-only loop really refuses writes.
      await expect(runner.run(['dd', 'if=/dev/zero', `of=${dev}`, 'bs=4096', 'count=1', 'conv=notrunc'])).rejects.toThrow();
    } finally {
      await detachLoop(runner, dev);
    }
    await detachLoop(runner, dev);
    expect(await findLoopsByBackingFile(runner, image)).not.toContain(dev);
  });

  it('teardown finds loops that were attached but never recorded', async () => {
    const cowFile = join(dir, 'cow.img');
    await runner.run(['truncate', '-s', String(8 * MiB), cowFile]);
    await attachLoop(runner, image, { readOnly: true });
    await attachLoop(runner, cowFile);
    expect(await loopsInTestDir()).toHaveLength(2);
    await teardownSnapshot({ runner, journal: new MemoryJournal() }, vmId, { imageRootfs: image, cowFile });
    expect(await loopsInTestDir()).toEqual([]);
  });

  it.skipIf(hasDm).each([
    { diskSizeBytes: IMAGE_BYTES, step: 'snapshot.dm', argv: 'dmsetup create banger-' },
    { diskSizeBytes: 64 * MiB, step: 'snapshot.origin', argv: 'dmsetup create --readonly banger-' },
  ])('dm strategy without device-mapper: fails at $step and leaves no loop device', async ({ diskSizeBytes, step, argv }) => {
    const journal = new MemoryJournal();
    const cowFile = join(dir, 'cow.img');
    const err = await setupSnapshot({ runner, journal }, { vmId, imageRootfs: image, cowFile, diskSizeBytes }).catch((e: Error) => e);
    expect(err).toBeInstanceOf(Error);
    expect((err as Error).message.startsWith(`${step}: ${argv}${vmId}`)).toBe(true);
    expect((err as Error).message).toMatch(/\/dev\/mapper\/control|device-mapper/);
    expect(journal.list(vmId)).toEqual([]);
    expect(await loopsInTestDir()).toEqual([]);
    // The COW file stays: it is the VM's disk, removed only with the VM.
    expect(existsSync(cowFile)).toBe(true);
  });

  it.runIf(hasDm)('dm strategy: a grown snapshot disk, torn down and set up again without a second resize', async () => {
    const journal = new MemoryJournal();
    const cowFile = join(dir, 'cow.img');
    const req = { vmId, imageRootfs: image, cowFile, diskSizeBytes: 64 * MiB };
    try {
      const disk = await setupSnapshot({ runner, journal }, req);
      expect(disk.resized).toBe(true);
      expect((await readFilesystemSize(runner, disk.devicePath)).bytes).toBe(64 * MiB);
      await teardownSnapshot({ runner, journal }, vmId, { imageRootfs: image, cowFile });
      expect(journal.list(vmId)).toEqual([]);
      const again = await setupSnapshot({ runner, journal }, req);
      expect(again.resized).toBe(false);
      const cat = await runner.run(['debugfs', '-R', 'cat /marker', again.devicePath]);
      expect(cat.stdout).toBe('banger marker\n');
    } finally {
      await teardownSnapshot({ runner, journal }, vmId, { imageRootfs: image, cowFile });
    }
    expect(await dmInfo(runner, `banger-${vmId}`)).toBeNull();
    expect(await loopsInTestDir()).toEqual([]);
  });
});
