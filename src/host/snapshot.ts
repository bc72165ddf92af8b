// The dm root disk strategy: a persistent device-mapper snapshot of the image's rootfs (through a
// read-only loop) over the VM's sparse COW file (through a second loop). Made at start, torn down
// at stop; the COW file holds the VM's disk and lives until `vm rm`.
//
// Every handle is in the journal the moment it exists (a mapper name even before it is created),
// and one function, teardownSnapshot, removes them all: rollback of a failed setup, stop, rm,
// crash clean-up and recovery.
import { statSync } from 'node:fs';
import { resolve } from 'node:path';
import { FailedPreconditionError, InvalidArgumentError, wrapError } from '../core/errors.js';
import { ID_PATTERN } from '../core/models.js';
import type { Clock, Journal, ResourceRecord, Runner } from '../core/ports.js';
import { withRollback } from '../core/unwind.js';
import { SECTOR_BYTES, getSectors } from './blockdev.js';
import {
  cowBytesFor,
  createDm,
  dmDevicePath,
  dmInfo,
  originDmName,
  paddedOriginTable,
  removeDm,
  snapshotDmName,
  snapshotTable,
} from './dm.js';
import { attachLoop, detachLoop, findLoopsByBackingFile, listLoops, type LoopDevice } from './loop.js';
import { checkFilesystem, growFilesystem, readFilesystemSize } from './rootdisk.js';

export interface SnapshotContext {
  runner: Runner;
  journal: Journal;
  /** Paces the retries of a busy mapper device; the system clock by default. */
  clock?: Clock;
}

export interface SnapshotRequest {
  vmId: string;
  /** The image's rootfs; opened read-only, never changed. */
  imageRootfs: string;
  /** The VM's COW file; created (sparse) when absent, never recreated. */
  cowFile: string;
  diskSizeBytes: number;
}

export interface SnapshotDisk {
  /** "/dev/mapper/banger-<id>" */
  devicePath: string;
  /** Whether this setup grew the filesystem. */
  resized: boolean;
}

export interface SnapshotFiles {
  imageRootfs: string;
  cowFile: string;
}

/** Step names, in order; they prefix errors ("snapshot.cow-loop: losetup ... exited 1: ..."). */
export const SNAPSHOT_STEPS = [
  'snapshot.base-loop',
  'snapshot.base-size',
  'snapshot.cow-file',
  'snapshot.cow-loop',
  'snapshot.cow-size',
  'snapshot.origin',
  'snapshot.dm',
  'snapshot.fs-size',
  'snapshot.fsck',
  'snapshot.resize',
] as const;
export type SnapshotStep = (typeof SNAPSHOT_STEPS)[number];

async function step<T>(name: SnapshotStep, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw wrapError(name, err);
  }
}

// Loops on an image are shared by every VM made from it. Attaching one and recording it must not
// interleave with another VM's teardown looking for unrecorded (leaked) loops on the same image.
const fileLocks = new Map<string, Promise<void>>();

async function withFileLock<T>(file: string, fn: () => Promise<T>): Promise<T> {
  const key = resolve(file);
  const previous = fileLocks.get(key) ?? Promise.resolve();
  let release!: () => void;
  const done = new Promise<void>((r) => (release = r));
  const tail = previous.then(() => done);
  fileLocks.set(key, tail);
  await previous;
  try {
    return await fn();
  } finally {
    release();
    if (fileLocks.get(key) === tail) fileLocks.delete(key);
  }
}

function checkVmId(vmId: string): void {
  if (!ID_PATTERN.test(vmId)) throw new InvalidArgumentError(`invalid vm id "${vmId}": expected 12 lowercase hex characters`);
}

function fileSize(file: string): number | null {
  try {
    return statSync(file).size;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
}

/** Makes the VM's writable root disk /dev/mapper/banger-<id>; on failure removes everything it made. */
export async function setupSnapshot(ctx: SnapshotContext, req: SnapshotRequest): Promise<SnapshotDisk> {
  const { runner, journal } = ctx;
  const { vmId, imageRootfs, cowFile, diskSizeBytes } = req;
  checkVmId(vmId);
  if (!Number.isSafeInteger(diskSizeBytes) || diskSizeBytes < SECTOR_BYTES) {
    throw new InvalidArgumentError(`invalid disk size ${diskSizeBytes}: expected a whole number of bytes of at least ${SECTOR_BYTES}`);
  }
  const held = journal.list(vmId).filter((r) => r.kind === 'loop' || r.kind === 'dm');
  if (held.length > 0) {
    throw new FailedPreconditionError(
      `vm ${vmId} still holds root disk devices (${held.map((r) => r.handle).join(', ')}); tear them down before setting up again`,
    );
  }
  const name = snapshotDmName(vmId);
  const originName = originDmName(vmId);
  const diskSectors = Math.floor(diskSizeBytes / SECTOR_BYTES);
  const cowBytes = cowBytesFor(diskSectors);

  return withRollback(`root disk setup for vm ${vmId}`, async (onUndo) => {
    // The rollback is the normal teardown: it finds what was recorded and what leaked.
    onUndo({ name: 'snapshot.teardown', run: () => teardownSnapshot(ctx, vmId, { imageRootfs, cowFile }) });

    const baseLoop = await step('snapshot.base-loop', () =>
      withFileLock(imageRootfs, async () => {
        const dev = await attachLoop(runner, imageRootfs, { readOnly: true });
        journal.record(vmId, 'loop', dev, imageRootfs);
        return dev;
      }),
    );

    const baseSectors = await step('snapshot.base-size', async () => {
      const sectors = await getSectors(runner, baseLoop);
      if (diskSectors < sectors) {
        throw new InvalidArgumentError(
          `disk size ${diskSizeBytes} bytes is smaller than the image's rootfs (${sectors * SECTOR_BYTES} bytes)`,
        );
      }
      return sectors;
    });

    // An existing COW file is the VM's disk: only ever grown (sparse), never recreated.
    await step('snapshot.cow-file', async () => {
      const size = fileSize(cowFile);
      if (size === null || size < cowBytes) await runner.run(['truncate', '-s', String(cowBytes), cowFile]);
    });

    const cowLoop = await step('snapshot.cow-loop', async () => {
      const dev = await attachLoop(runner, cowFile);
      journal.record(vmId, 'loop', dev, cowFile);
      return dev;
    });

    await step('snapshot.cow-size', async () => {
      const sectors = await getSectors(runner, cowLoop);
      if (sectors * SECTOR_BYTES < cowBytes) {
        throw new FailedPreconditionError(`COW device ${cowLoop} has ${sectors} sectors, fewer than the ${cowBytes / SECTOR_BYTES} needed`);
      }
    });

    const isPadded = diskSectors > baseSectors;
    let originDev = baseLoop;
    if (isPadded) {
      originDev = await step('snapshot.origin', async () => {
        journal.record(vmId, 'dm', originName, 'origin');
        // Read-only: a writable linear mapping over a read-only loop is refused (EACCES).
        await createDm(runner, originName, paddedOriginTable(baseLoop, baseSectors, diskSectors), { readOnly: true });
        return dmDevicePath(originName);
      });
    }
    const totalSectors = isPadded ? diskSectors : baseSectors;

    await step('snapshot.dm', async () => {
      journal.record(vmId, 'dm', name, 'snapshot');
      await createDm(runner, name, snapshotTable(totalSectors, originDev, cowLoop));
    });
    const devicePath = dmDevicePath(name);

    // Grow the filesystem only when it is smaller than the disk: the first start after create, or
    // a later one if that start died half-way. Running it on every start would cost an fsck each time.
    let resized = false;
    if (isPadded) {
      const fs = await step('snapshot.fs-size', () => readFilesystemSize(runner, devicePath));
      if (fs.bytes + fs.blockSize <= totalSectors * SECTOR_BYTES) {
        await step('snapshot.fsck', () => checkFilesystem(runner, devicePath));
        await step('snapshot.resize', () => growFilesystem(runner, devicePath));
        resized = true;
      }
    }
    return { devicePath, resized };
  });
}

/**
 * Removes the VM's mapper devices (snapshot before origin, retrying while busy), then its loops,
 * found both in the journal and by backing file, so that a loop attached just before a crash
 * cannot leak. Runs every step even when one fails, treats already-gone as done, forgets journal
 * entries as it goes, and throws one AggregateError of all failures.
 */
export async function teardownSnapshot(ctx: SnapshotContext, vmId: string, files: SnapshotFiles): Promise<void> {
  checkVmId(vmId);
  const { runner, journal } = ctx;
  const failures: Error[] = [];
  const attempt = async (what: string, fn: () => Promise<void>): Promise<void> => {
    try {
      await fn();
    } catch (err) {
      const e = err instanceof Error ? err : new Error(String(err));
      failures.push(new Error(`${what}: ${e.message}`, { cause: e }));
    }
  };

  // Mapper devices: recorded ones, plus the two names this VM can have in case a record was lost.
  const recordedDm = journal
    .list(vmId)
    .filter((r) => r.kind === 'dm')
    .map((r) => r.handle)
    .reverse();
  const dmNames = [...recordedDm];
  for (const known of [snapshotDmName(vmId), originDmName(vmId)]) {
    if (!dmNames.includes(known) && (await dmInfo(runner, known))) dmNames.push(known);
  }
  // The snapshot holds its origin open, so it goes first.
  dmNames.sort((a, b) => Number(a.endsWith('-origin')) - Number(b.endsWith('-origin')));
  for (const name of dmNames) {
    await attempt(`snapshot.${name.endsWith('-origin') ? 'origin' : 'dm'} ${name}`, async () => {
      await removeDm(runner, name, { clock: ctx.clock });
      journal.forget(vmId, 'dm', name);
    });
  }

  // Loops: what is attached to each file that matters, measured before anything is detached.
  const recordedLoops = journal.list(vmId).filter((r) => r.kind === 'loop');
  const attachedTo = new Map<string, string[]>();
  const lookUp = async (file: string): Promise<void> => {
    if (attachedTo.has(file)) return;
    attachedTo.set(file, []);
    await attempt(`snapshot.find-loops ${file}`, async () => {
      attachedTo.set(file, await findLoopsByBackingFile(runner, file));
    });
  };
  await lookUp(files.cowFile);
  for (const r of recordedLoops) if (r.detail && r.detail !== files.imageRootfs) await lookUp(r.detail);
  // Unrecorded read-only loops on the image belong to no VM: a crash hit between attach and record.
  let leakedImageLoops: string[] = [];
  await withFileLock(files.imageRootfs, async () => {
    await lookUp(files.imageRootfs);
    const owned = new Set(journal.listAll().filter((r) => r.kind === 'loop').map((r) => r.handle));
    leakedImageLoops = (attachedTo.get(files.imageRootfs) ?? []).filter((dev) => !owned.has(dev));
  });
  let table: LoopDevice[] | null = null;
  const loopTable = async (): Promise<LoopDevice[]> => (table ??= await listLoops(runner));
  if (leakedImageLoops.length > 0) {
    // Only loops seen to be read-only (the only kind banger attaches to an image) are detached.
    const candidates = leakedImageLoops;
    leakedImageLoops = [];
    await attempt('snapshot.find-loops', async () => {
      const readOnly = new Set((await loopTable()).filter((l) => l.isReadOnly).map((l) => l.name));
      leakedImageLoops = candidates.filter((dev) => readOnly.has(dev));
    });
  }

  const stepFor = (file: string): string => (file === files.cowFile ? 'snapshot.cow-loop' : 'snapshot.base-loop');
  for (const r of [...recordedLoops].reverse()) {
    await attempt(`${stepFor(r.detail)} ${r.handle}`, async () => {
      if (await isStillAttached(r, attachedTo, loopTable)) await detachLoop(runner, r.handle);
      journal.forget(vmId, 'loop', r.handle);
    });
  }
  const recordedHandles = new Set(recordedLoops.map((r) => r.handle));
  const leaked = [
    ...(attachedTo.get(files.cowFile) ?? []).map((dev) => ({ dev, file: files.cowFile })),
    ...leakedImageLoops.map((dev) => ({ dev, file: files.imageRootfs })),
  ].filter((l) => !recordedHandles.has(l.dev));
  for (const l of leaked) {
    await attempt(`${stepFor(l.file)} ${l.dev} (unrecorded)`, () => detachLoop(runner, l.dev));
  }

  if (failures.length > 0) {
    throw new AggregateError(failures, `root disk teardown for vm ${vmId} failed: ${failures.map((f) => f.message).join('; ')}`);
  }
}

// A recorded loop is detached only while it still serves the recorded file: after a reboot the
// same /dev/loopN may belong to someone else. `losetup -j` cannot see a file that was deleted or
// moved, so the loop table is the fallback.
async function isStillAttached(
  record: ResourceRecord,
  attachedTo: Map<string, string[]>,
  loopTable: () => Promise<LoopDevice[]>,
): Promise<boolean> {
  if (attachedTo.get(record.detail)?.includes(record.handle)) return true;
  if (!record.detail) return true;
  const row = (await loopTable()).find((l) => l.name === record.handle);
  return row !== undefined && resolve(row.backingFile) === resolve(record.detail);
}
