import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { build } from 'esbuild';
import { InvalidArgumentError } from '../../src/core/errors.js';
import { checkKernel, checkReadable, checkRootfs, hostKernelArch, rootfsSizeBytes } from '../../src/core/image-check.js';

let dir: string;
const isRoot = process.getuid?.() === 0;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'banger-image-check-'));
  chmodSync(dir, 0o755);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function file(name: string, content: Buffer | string): string {
  const p = join(dir, name);
  writeFileSync(p, content);
  return p;
}

/** A bzImage-like file: boot sector, then the "HdrS" setup header signature at 0x202. */
function fakeBzImage(): Buffer {
  const buf = Buffer.alloc(8192);
  buf[510] = 0x55;
  buf[511] = 0xaa;
  buf.write('HdrS', 0x202, 'latin1');
  return buf;
}

/** A minimal 64-bit little-endian ELF header with the given e_machine. */
function elfHeader(machine: number, elfClass = 2): Buffer {
  const buf = Buffer.alloc(64);
  buf.write('\x7fELF', 0, 'latin1');
  buf[4] = elfClass;
  buf[5] = 1;
  buf[6] = 1;
  buf.writeUInt16LE(2, 0x10);
  buf.writeUInt16LE(machine, 0x12);
  return buf;
}

async function rejection(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (err) {
    return err as Error;
  }
  throw new Error('expected a rejection');
}

describe('checkKernel', () => {
  it('accepts a real 64-bit ELF executable of this host', async () => {
    const elf = join(dir, 'true-elf');
    copyFileSync('/bin/true', elf);
    await expect(checkKernel(elf)).resolves.toBeUndefined();
    await expect(checkKernel(process.execPath)).resolves.toBeUndefined();
  });

  it('names a bzImage and points at extract-vmlinux.sh', async () => {
    const p = file('bzImage', fakeBzImage());
    const err = await rejection(checkKernel(p));
    expect(err).toBeInstanceOf(InvalidArgumentError);
    expect(err.message).toBe(
      `kernel ${p} is not an ELF vmlinux (it looks like a bzImage: extract it with scripts/extract-vmlinux.sh)`,
    );
  });

  it('rejects garbage with a generic message', async () => {
    const p = file('garbage', 'this is not a kernel at all, just some text\n'.repeat(50));
    const err = await rejection(checkKernel(p));
    expect(err).toBeInstanceOf(InvalidArgumentError);
    expect(err.message).toMatch(new RegExp(`^kernel ${p} is not an ELF vmlinux \\(`));
    expect(err.message).not.toMatch(/bzImage/);
  });

  it('rejects an empty file', async () => {
    const p = file('empty-kernel', '');
    await expect(checkKernel(p)).rejects.toThrow(`kernel ${p} is empty`);
  });

  it('rejects a 32-bit ELF', async () => {
    const p = file('elf32', elfHeader(62, 1));
    await expect(checkKernel(p)).rejects.toThrow(`kernel ${p} is not a 64-bit little-endian ELF vmlinux`);
  });

  it('rejects an ELF for an architecture Firecracker does not run', async () => {
    const p = file('elf-riscv', elfHeader(243));
    await expect(checkKernel(p)).rejects.toThrow(`kernel ${p} is an ELF for machine 243, not x86_64 or aarch64`);
  });

  it('rejects an ELF built for the other architecture than the host', async () => {
    const x86 = file('elf-x86', elfHeader(62));
    const arm = file('elf-arm', elfHeader(183));
    await expect(checkKernel(x86, { arch: 'x86_64' })).resolves.toBeUndefined();
    await expect(checkKernel(arm, { arch: 'aarch64' })).resolves.toBeUndefined();
    await expect(checkKernel(arm, { arch: 'x86_64' })).rejects.toThrow(
      `kernel ${arm} is built for aarch64 but this host runs x86_64 guests`,
    );
    const other = hostKernelArch() === 'aarch64' ? x86 : arm;
    await expect(checkKernel(other)).rejects.toThrow(/is built for/);
  });

  it('says a missing kernel does not exist', async () => {
    const p = join(dir, 'no-such-kernel');
    const err = await rejection(checkKernel(p));
    expect(err).toBeInstanceOf(InvalidArgumentError);
    expect(err.message).toBe(`kernel ${p}: no such file`);
  });

  it('refuses a directory', async () => {
    const p = join(dir, 'a-directory');
    mkdirSync(p);
    await expect(checkKernel(p)).rejects.toThrow(`kernel ${p}: not a regular file`);
  });
});

describe('checkRootfs', () => {
  it('accepts an ext4 image made by mkfs.ext4', async () => {
    const p = join(dir, 'rootfs.ext4');
    const tree = join(dir, 'tree');
    mkdirSync(join(tree, 'etc'), { recursive: true });
    writeFileSync(join(tree, 'etc', 'hostname'), 'x\n');
    execFileSync('mkfs.ext4', ['-q', '-d', tree, '-F', p, '8M']);
    await expect(checkRootfs(p)).resolves.toBeUndefined();
    expect(await rootfsSizeBytes(p)).toBe(8 * 1024 * 1024);
  });

  it('rejects garbage and says how to make an image', async () => {
    const p = file('rootfs-garbage', Buffer.alloc(4096, 0x41));
    const err = await rejection(checkRootfs(p));
    expect(err).toBeInstanceOf(InvalidArgumentError);
    expect(err.message).toBe(
      `rootfs ${p} is not an ext4 filesystem image (it has no ext2/3/4 superblock); make one with: mkfs.ext4 -d DIR FILE SIZE`,
    );
  });

  it('recognises a partitioned disk image', async () => {
    const buf = Buffer.alloc(4096);
    buf[510] = 0x55;
    buf[511] = 0xaa;
    const p = file('disk.img', buf);
    await expect(checkRootfs(p)).rejects.toThrow(/looks like a partitioned disk/);
  });

  it('rejects a file too short to hold a superblock', async () => {
    const p = file('rootfs-short', Buffer.alloc(1000));
    await expect(checkRootfs(p)).rejects.toThrow(`rootfs ${p} is not an ext4 filesystem image`);
  });

  it('rejects an empty file', async () => {
    const p = file('rootfs-empty', '');
    await expect(checkRootfs(p)).rejects.toThrow(`rootfs ${p} is empty; make one with: mkfs.ext4 -d DIR FILE SIZE`);
  });

  it('says a missing rootfs does not exist', async () => {
    const p = join(dir, 'no-such-rootfs');
    await expect(checkRootfs(p)).rejects.toThrow(`rootfs ${p}: no such file`);
    await expect(rootfsSizeBytes(p)).rejects.toThrow(`rootfs ${p}: no such file`);
  });
});

describe('checkReadable', () => {
  it('passes a readable file and names what is missing', async () => {
    await expect(checkReadable(file('initrd', 'x'), 'initrd')).resolves.toBeUndefined();
    await expect(checkReadable(join(dir, 'nope', 'initrd'), 'initrd')).rejects.toThrow(
      `initrd ${join(dir, 'nope', 'initrd')}: no such file`,
    );
  });

  it('reports an unreadable file as permission denied', async () => {
    const p = file('unreadable', 'secret');
    chmodSync(p, 0o000);
    if (!isRoot) {
      await expect(checkReadable(p, 'kernel')).rejects.toThrow(`kernel ${p}: permission denied`);
      return;
    }
    // Root reads everything, so run the real function as "nobody" in a child process.
    const bundle = join(dir, 'check-readable.mjs');
    await build({
      stdin: {
        contents: `import { checkReadable } from './src/core/image-check.ts';
          checkReadable(process.argv[2], 'kernel').then(() => console.log('ok'), (e) => console.log(e.message));`,
        resolveDir: join(import.meta.dirname, '..', '..'),
        loader: 'ts',
      },
      bundle: true,
      platform: 'node',
      format: 'esm',
      outfile: bundle,
      logLevel: 'silent',
    });
    chmodSync(bundle, 0o644);
    const child = spawnSync(process.execPath, [bundle, p], { uid: 65534, gid: 65534, encoding: 'utf8' });
    expect(child.stderr).toBe('');
    expect(child.stdout.trim()).toBe(`kernel ${p}: permission denied (not readable by this user)`);
  });
});
