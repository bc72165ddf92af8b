// image.build: a Debian rootfs made with debootstrap (scripts/build-rootfs.sh), customized with
// banger's key and boot units, and registered. A build that fails leaves nothing: no record, no files.
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { Image } from '../core/models.js';
import { InvalidArgumentError, wrapError } from '../core/errors.js';
import { checkKernel, checkReadable } from '../core/image-check.js';
import { installRoot } from '../core/install-root.js';
import type { DaemonDeps } from './daemon.js';
import type { Progress } from './service.js';
import type { Params } from './schemas.js';
import { copyFile, createImage, type ImageFiles } from './image-ops.js';

const DEFAULT_SIZE_BYTES = 2 * 1024 ** 3;
const BUILD_TIMEOUT_MS = 45 * 60_000;

/** The Debian cloud kernel boots under QEMU; real Firecracker needs a kernel with virtio-mmio built in. */
export const DEBIAN_KERNEL_BOOT_ARGS = 'net.ifnames=0';

export async function buildImage(deps: DaemonDeps, p: Params<'image.build'>, progress: Progress): Promise<Image> {
  deps.store.assertImageNameFree(p.name);
  if (!p.kernel && !p.debianKernel) throw new InvalidArgumentError('image build needs a kernel: give --kernel PATH or --debian-kernel');
  if (p.kernel && p.debianKernel) throw new InvalidArgumentError('give either --kernel or --debian-kernel, not both');
  if (p.kernel) await checkKernel(p.kernel);
  if (p.initrd) await checkReadable(p.initrd, 'initrd');

  return createImage(deps, p.name, progress, async (dir) => {
    const files: ImageFiles = {
      kernelPath: join(dir, 'vmlinux'),
      rootfsPath: join(dir, 'rootfs.ext4'),
      initrdPath: null,
      bootArgs: p.debianKernel ? DEBIAN_KERNEL_BOOT_ARGS : '',
    };
    await runBuildScript(deps, p, dir, files.rootfsPath, progress);
    if (p.debianKernel) {
      // build-rootfs.sh left vmlinuz, the extracted ELF vmlinux and initrd.img in dir.
      rmSync(join(dir, 'vmlinuz'), { force: true });
      rmSync(join(dir, 'kernel-release'), { force: true });
      files.initrdPath = join(dir, 'initrd.img');
      if (!existsSync(files.kernelPath) || !existsSync(files.initrdPath)) throw new InvalidArgumentError('the Debian kernel build left no vmlinux/initrd.img');
    } else {
      progress.phase('image.copy');
      await copyFile(deps.runner, p.kernel!, files.kernelPath);
      if (p.initrd) {
        files.initrdPath = join(dir, 'initrd.img');
        await copyFile(deps.runner, p.initrd, files.initrdPath);
      }
    }
    return files;
  });
}

/** Runs scripts/build-rootfs.sh (as root: debootstrap chroots), turning its "phase:" lines into progress. */
async function runBuildScript(deps: DaemonDeps, p: Params<'image.build'>, dir: string, rootfsPath: string, progress: Progress): Promise<void> {
  const argv = [
    join(installRoot(), 'scripts', 'build-rootfs.sh'),
    '--out',
    rootfsPath,
    '--size',
    `${Math.floor((p.sizeBytes ?? DEFAULT_SIZE_BYTES) / 1024)}K`,
    '--suite',
    p.suite ?? 'bookworm',
    ...(p.packages?.length ? ['--packages', p.packages.join(',')] : []),
    ...(p.debianKernel ? ['--debian-kernel', dir] : []),
    ...(process.env.BANGER_DEBIAN_MIRROR ? ['--mirror', process.env.BANGER_DEBIAN_MIRROR] : []),
  ];
  const asRoot = process.getuid?.() === 0;
  let buffered = '';
  try {
    await deps.runner.run(asRoot ? argv : ['sudo', '-n', ...argv], {
      timeoutMs: BUILD_TIMEOUT_MS,
      onStdout: (chunk) => {
        buffered += chunk;
        let i: number;
        while ((i = buffered.indexOf('\n')) >= 0) {
          const line = buffered.slice(0, i);
          buffered = buffered.slice(i + 1);
          const m = /^phase: (.+)$/.exec(line);
          if (m) progress.phase(`image.${m[1]}`);
        }
      },
    });
  } catch (err) {
    throw wrapError(`building image ${p.name}`, err);
  }
  if (!asRoot) {
    // Built as root through sudo: hand the files back to the daemon's user.
    await deps.runner.run(['sudo', '-n', 'chown', '-R', `${process.getuid?.()}:${process.getgid?.()}`, dir]);
  }
}
