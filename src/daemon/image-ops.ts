// image.add / list / get / delete: validates the files, copies them into the data directory,
// customizes the rootfs copy, and registers the image only when everything succeeded.
import { mkdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { Image } from '../core/models.js';
import { FailedPreconditionError, wrapError } from '../core/errors.js';
import { newId } from '../core/names.js';
import { imageDir, type Paths } from '../core/paths.js';
import type { Runner } from '../core/ports.js';
import { checkKernel, checkReadable, checkRootfs } from '../core/image-check.js';
import type { Store } from '../store/store.js';
import { findImage, type Progress } from './service.js';

export interface ImageDeps {
  store: Store;
  paths: Paths;
  runner: Runner;
  /** Installs banger's SSH key and boot units into a rootfs file (scripts/customize-rootfs.sh). */
  customizeRootfs: (rootfsFile: string, progress: Progress) => Promise<void>;
}

export interface AddImageRequest {
  name: string;
  kernel: string;
  rootfs: string;
  initrd?: string;
  bootArgs?: string;
}

export interface ImageFiles {
  kernelPath: string;
  rootfsPath: string;
  initrdPath: string | null;
  bootArgs: string;
}

/**
 * Makes an image (the caller has checked the name is free): a fresh directory that fill() puts the files into, the rootfs customized, the
 * record inserted last. Any failure removes the directory, so nothing is left and nothing registered.
 */
export async function createImage(
  deps: ImageDeps,
  name: string,
  progress: Progress,
  fill: (dir: string) => Promise<ImageFiles>,
): Promise<Image> {
  const id = newId();
  const dir = imageDir(deps.paths, id);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  try {
    const files = await fill(dir);
    progress.phase('image.customize');
    await deps.customizeRootfs(files.rootfsPath, progress);
    const image: Image = { id, name, ...files, rootfsSizeBytes: statSync(files.rootfsPath).size, createdAt: new Date().toISOString() };
    deps.store.insertImage(image);
    progress.phase('image.registered');
    return image;
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
}

export async function addImage(deps: ImageDeps, req: AddImageRequest, progress: Progress): Promise<Image> {
  deps.store.assertImageNameFree(req.name);
  progress.phase('image.check');
  await checkKernel(req.kernel);
  await checkRootfs(req.rootfs);
  if (req.initrd) await checkReadable(req.initrd, 'initrd');
  return createImage(deps, req.name, progress, async (dir) => {
    const files: ImageFiles = {
      kernelPath: join(dir, 'vmlinux'),
      rootfsPath: join(dir, 'rootfs.ext4'),
      initrdPath: req.initrd ? join(dir, 'initrd.img') : null,
      bootArgs: (req.bootArgs ?? '').trim().split(/\s+/).filter(Boolean).join(' '),
    };
    progress.phase('image.copy');
    await copyFile(deps.runner, req.kernel, files.kernelPath);
    await copyFile(deps.runner, req.rootfs, files.rootfsPath);
    if (req.initrd && files.initrdPath) await copyFile(deps.runner, req.initrd, files.initrdPath);
    return files;
  });
}

/** Copies sparsely, reflinking where the filesystem allows. */
export async function copyFile(runner: Runner, from: string, to: string): Promise<void> {
  try {
    await runner.run(['cp', '--reflink=auto', '--sparse=always', '--', from, to], { timeoutMs: 600_000 });
  } catch (err) {
    throw wrapError(`copying ${from}`, err);
  }
}

export function deleteImage(deps: Pick<ImageDeps, 'store' | 'paths'>, ref: string): Image {
  const image = findImage(deps, ref);
  const users = deps.store.listVms().filter((v) => v.imageId === image.id);
  if (users.length > 0) {
    throw new FailedPreconditionError(
      `image "${image.name}" is used by ${users.length} VM${users.length > 1 ? 's' : ''} (${users.map((v) => v.name).join(', ')}); remove ${users.length > 1 ? 'them' : 'it'} first with banger vm rm`,
    );
  }
  deps.store.deleteImage(image.id);
  rmSync(imageDir(deps.paths, image.id), { recursive: true, force: true });
  return image;
}
