// image.add / list / get / delete: validates the files, copies them into the data directory,
// customizes the rootfs copy, and registers the image only when everything succeeded.
import { mkdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { Image } from '../core/models.js';
import { AlreadyExistsError, FailedPreconditionError, wrapError } from '../core/errors.js';
import { newId } from '../core/names.js';
import { imageDir, type Paths } from '../core/paths.js';
import type { Runner } from '../core/ports.js';
import { checkKernel, checkRootfs } from '../core/image-check.js';
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

export async function addImage(deps: ImageDeps, req: AddImageRequest, progress: Progress): Promise<Image> {
  if (deps.store.listImages().some((i) => i.name === req.name)) {
    throw new AlreadyExistsError(`image "${req.name}" already exists; pick another name or remove it with banger image rm ${req.name}`);
  }
  progress.phase('image.check');
  await checkKernel(req.kernel);
  await checkRootfs(req.rootfs);
  if (req.initrd) await checkReadableFile(req.initrd, 'initrd');

  const id = newId();
  const dir = imageDir(deps.paths, id);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  try {
    const kernelPath = join(dir, 'vmlinux');
    const rootfsPath = join(dir, 'rootfs.ext4');
    const initrdPath = req.initrd ? join(dir, 'initrd.img') : null;
    progress.phase('image.copy');
    await copyFile(deps.runner, req.kernel, kernelPath);
    await copyFile(deps.runner, req.rootfs, rootfsPath);
    if (req.initrd && initrdPath) await copyFile(deps.runner, req.initrd, initrdPath);
    progress.phase('image.customize');
    await deps.customizeRootfs(rootfsPath, progress);
    const image: Image = {
      id,
      name: req.name,
      kernelPath,
      rootfsPath,
      initrdPath,
      bootArgs: (req.bootArgs ?? '').trim().split(/\s+/).filter(Boolean).join(' '),
      rootfsSizeBytes: statSync(rootfsPath).size,
      createdAt: new Date().toISOString(),
    };
    deps.store.insertImage(image);
    progress.phase('image.registered');
    return image;
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
}

async function checkReadableFile(path: string, what: string): Promise<void> {
  const { checkReadable } = await import('../core/image-check.js');
  await checkReadable(path, what);
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
  const image = findImage({ store: deps.store } as never, ref);
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
