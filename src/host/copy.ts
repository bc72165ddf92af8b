// The copy root disk strategy, for hosts without device-mapper snapshots (or when asked for): at
// create time, a reflink or sparse copy of the image's rootfs into the VM directory, grown to the
// disk size (file and filesystem). The file is the VM's disk until `vm rm`.
import { rmSync, statSync } from 'node:fs';
import { FailedPreconditionError, InvalidArgumentError, wrapError } from '../core/errors.js';
import { ID_PATTERN } from '../core/models.js';
import type { Journal, Runner } from '../core/ports.js';
import { withRollback } from '../core/unwind.js';
import { checkFilesystem, growFilesystem } from './rootdisk.js';

export interface CopyContext {
  runner: Runner;
  journal: Journal;
}

export interface CopyRequest {
  vmId: string;
  imageRootfs: string;
  /** Where the VM's disk goes, e.g. vms/<id>/rootfs.ext4. Must not exist yet. */
  diskFile: string;
  diskSizeBytes: number;
}

export interface CopyDisk {
  diskFile: string;
  resized: boolean;
}

export const COPY_STEPS = ['copy.copy', 'copy.grow', 'copy.fsck', 'copy.resize'] as const;
export type CopyStep = (typeof COPY_STEPS)[number];

/** `cp` clones (reflink) where the filesystem can, else writes a sparse copy. */
export function copyArgv(src: string, dst: string): string[] {
  return ['cp', '--reflink=auto', '--sparse=always', src, dst];
}

export function growFileArgv(file: string, bytes: number): string[] {
  return ['truncate', '-s', String(bytes), file];
}

async function step<T>(name: CopyStep, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw wrapError(name, err);
  }
}

/** Makes the VM's disk file; a failure leaves no file behind. */
export async function prepareCopyDisk(ctx: CopyContext, req: CopyRequest): Promise<CopyDisk> {
  const { runner, journal } = ctx;
  const { vmId, imageRootfs, diskFile, diskSizeBytes } = req;
  if (!ID_PATTERN.test(vmId)) throw new InvalidArgumentError(`invalid vm id "${vmId}": expected 12 lowercase hex characters`);
  if (!Number.isSafeInteger(diskSizeBytes) || diskSizeBytes <= 0) {
    throw new InvalidArgumentError(`invalid disk size ${diskSizeBytes}: expected a positive whole number of bytes`);
  }
  let imageBytes: number;
  try {
    imageBytes = statSync(imageRootfs).size;
  } catch (err) {
    throw new FailedPreconditionError(`cannot read the image's rootfs ${imageRootfs}: ${(err as Error).message}`, { cause: err });
  }
  if (diskSizeBytes < imageBytes) {
    throw new InvalidArgumentError(`disk size ${diskSizeBytes} bytes is smaller than the image's rootfs (${imageBytes} bytes)`);
  }
  // Never overwrite a disk: an existing file is some VM's data.
  if (exists(diskFile)) throw new FailedPreconditionError(`disk file ${diskFile} already exists; remove it or pick another VM directory`);

  return withRollback(`root disk copy for vm ${vmId}`, async (onUndo) => {
    journal.record(vmId, 'file', diskFile, 'rootfs copy');
    onUndo({ name: 'copy.remove', run: () => removeCopyDisk(ctx, vmId, diskFile) });
    await step('copy.copy', () => runner.run(copyArgv(imageRootfs, diskFile), { timeoutMs: 30 * 60_000 }));
    if (diskSizeBytes === imageBytes) return { diskFile, resized: false };
    await step('copy.grow', () => runner.run(growFileArgv(diskFile, diskSizeBytes)));
    await step('copy.fsck', () => checkFilesystem(runner, diskFile));
    await step('copy.resize', () => growFilesystem(runner, diskFile));
    return { diskFile, resized: true };
  });
}

/** Removes the VM's disk file; one that is already gone counts as removed. */
export async function removeCopyDisk(ctx: { journal: Journal }, vmId: string, diskFile: string): Promise<void> {
  rmSync(diskFile, { force: true });
  ctx.journal.forget(vmId, 'file', diskFile);
}

function exists(file: string): boolean {
  try {
    statSync(file);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
}
