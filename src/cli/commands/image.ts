// banger image add | build | ls | show | rm
import type { Command } from 'commander';
import type { Image } from '../../core/models.js';
import type { CliContext } from '../context.js';
import { humanAge, humanBytes, keyValues, printJson, table } from '../output.js';
import { checkName, pathFlag, sizeFlag } from '../parse.js';
import { UsageError } from '../errors.js';

function printImage(img: Image): void {
  process.stdout.write(
    keyValues([
      ['id', img.id],
      ['name', img.name],
      ['kernel', img.kernelPath],
      ['rootfs', `${img.rootfsPath} (${humanBytes(img.rootfsSizeBytes)})`],
      ['initrd', img.initrdPath ?? '-'],
      ['boot args', img.bootArgs || '-'],
      ['created', img.createdAt],
    ]),
  );
}

export function registerImage(program: Command, cli: CliContext): void {
  const image = program.command('image').description('manage images (kernel + root filesystem)');
  image
    .command('add <name>')
    .description('register a kernel and an ext4 rootfs as an image')
    .requiredOption('--kernel <path>', 'uncompressed ELF vmlinux', pathFlag)
    .requiredOption('--rootfs <path>', 'ext4 root filesystem image', pathFlag)
    .option('--initrd <path>', 'initial ramdisk', pathFlag)
    .option('--boot-args <args>', 'extra kernel command line arguments')
    .option('--json', 'print the image as JSON')
    .action(async (name: string, o: { kernel: string; rootfs: string; initrd?: string; bootArgs?: string; json?: boolean }) => {
      checkName('image name', name);
      const img = await cli.call<Image>('image.add', { name, kernel: o.kernel, rootfs: o.rootfs, initrd: o.initrd, bootArgs: o.bootArgs }, { progress: true });
      if (o.json) printJson(img);
      else process.stdout.write(`${img.name}\n`);
    });
  image
    .command('build <name>')
    .description('build a Debian rootfs with debootstrap and register it')
    .option('--kernel <path>', 'uncompressed ELF vmlinux to use', pathFlag)
    .option('--initrd <path>', 'initial ramdisk', pathFlag)
    .option('--debian-kernel', "install Debian's cloud kernel in the image and use it (boots under QEMU; real Firecracker needs a kernel with virtio-mmio built in)")
    .option('--suite <suite>', 'Debian suite', 'bookworm')
    .option('--size <size>', 'rootfs size (e.g. 2G)', sizeFlag('--size'))
    .option('--packages <list>', 'extra packages, comma separated')
    .option('--json', 'print the image as JSON')
    .action(async (name: string, o: { kernel?: string; initrd?: string; debianKernel?: boolean; suite: string; size?: number; packages?: string; json?: boolean }) => {
      checkName('image name', name);
      if (!o.kernel && !o.debianKernel) throw new UsageError('image build needs --kernel PATH or --debian-kernel');
      const packages = o.packages ? o.packages.split(',').map((p) => p.trim()).filter(Boolean) : undefined;
      const img = await cli.call<Image>(
        'image.build',
        { name, kernel: o.kernel, initrd: o.initrd, suite: o.suite, sizeBytes: o.size, packages, debianKernel: o.debianKernel },
        { progress: true },
      );
      if (o.json) printJson(img);
      else process.stdout.write(`${img.name}\n`);
    });
  image
    .command('ls')
    .description('list images')
    .option('--json', 'print a JSON array')
    .action(async (o: { json?: boolean }) => {
      const images = await cli.call<Image[]>('image.list', {});
      if (o.json) return printJson(images);
      process.stdout.write(table(['NAME', 'ID', 'SIZE', 'INITRD', 'AGE'], images.map((i) => [i.name, i.id, humanBytes(i.rootfsSizeBytes), i.initrdPath ? 'yes' : 'no', humanAge(i.createdAt)])));
    });
  image
    .command('show <image>')
    .description('show one image')
    .option('--json', 'print a JSON object')
    .action(async (ref: string, o: { json?: boolean }) => {
      const img = await cli.call<Image>('image.get', { image: ref });
      if (o.json) printJson(img);
      else printImage(img);
    });
  image
    .command('rm <image>')
    .description('remove an image (refused while a VM uses it)')
    .action(async (ref: string) => {
      const img = await cli.call<Image>('image.delete', { image: ref });
      process.stdout.write(`${img.name}\n`);
    });
}
