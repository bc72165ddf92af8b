// Validation of image files by their headers only: the kernel must be an ELF vmlinux, the rootfs an ext2/3/4 filesystem.
import { open, stat } from 'node:fs/promises';
import { InvalidArgumentError } from './errors.js';

/** CPU architectures Firecracker runs on, named as the kernel names them. */
export type KernelArch = 'x86_64' | 'aarch64';

// ELF e_machine values (elf.h): EM_X86_64 = 62, EM_AARCH64 = 183.
const ELF_MACHINES: Record<number, KernelArch> = { 62: 'x86_64', 183: 'aarch64' };

/** The kernel architecture of this host, or null when Firecracker does not run on it. */
export function hostKernelArch(arch: string = process.arch): KernelArch | null {
  return arch === 'x64' ? 'x86_64' : arch === 'arm64' ? 'aarch64' : null;
}

/** Fails unless path names an existing regular file this process can read. */
export async function checkReadable(path: string, what: string): Promise<void> {
  let info;
  try {
    info = await stat(path);
  } catch (err) {
    throw fileError(path, what, err);
  }
  if (!info.isFile()) {
    throw new InvalidArgumentError(`${what} ${path}: not a regular file`, { details: { path } });
  }
  try {
    const handle = await open(path, 'r');
    await handle.close();
  } catch (err) {
    throw fileError(path, what, err);
  }
}

/** Fails unless path is a 64-bit little-endian ELF vmlinux for this host's architecture. */
export async function checkKernel(path: string, options: { arch?: KernelArch | null } = {}): Promise<void> {
  await checkReadable(path, 'kernel');
  const head = await readHeader(path, 0, 0x206);
  if (head.length === 0) {
    throw new InvalidArgumentError(`kernel ${path} is empty`, { details: { path } });
  }
  if (!isElf(head)) {
    // x86 boot protocol: a bzImage carries "HdrS" at 0x202 (Documentation/arch/x86/boot.rst).
    if (head.subarray(0x202, 0x206).toString('latin1') === 'HdrS') {
      throw new InvalidArgumentError(
        `kernel ${path} is not an ELF vmlinux (it looks like a bzImage: extract it with scripts/extract-vmlinux.sh)`,
        { details: { path } },
      );
    }
    throw new InvalidArgumentError(`kernel ${path} is not an ELF vmlinux (Firecracker boots an uncompressed vmlinux)`, {
      details: { path },
    });
  }
  // e_ident[EI_CLASS] at 4 (2 = 64-bit), e_ident[EI_DATA] at 5 (1 = little-endian), e_machine at 0x12.
  if (head.length < 0x14 || head[4] !== 2 || head[5] !== 1) {
    throw new InvalidArgumentError(`kernel ${path} is not a 64-bit little-endian ELF vmlinux`, { details: { path } });
  }
  const machineCode = head.readUInt16LE(0x12);
  const machine = ELF_MACHINES[machineCode];
  if (!machine) {
    throw new InvalidArgumentError(`kernel ${path} is an ELF for machine ${machineCode}, not x86_64 or aarch64`, {
      details: { path },
    });
  }
  const want = options.arch === undefined ? hostKernelArch() : options.arch;
  if (want && machine !== want) {
    throw new InvalidArgumentError(`kernel ${path} is built for ${machine} but this host runs ${want} guests`, {
      details: { path },
    });
  }
}

/** Fails unless path is a bare ext2/3/4 filesystem image. */
export async function checkRootfs(path: string): Promise<void> {
  await checkReadable(path, 'rootfs');
  const head = await readHeader(path, 0, 2048);
  const howTo = 'make one with: mkfs.ext4 -d DIR FILE SIZE';
  if (head.length === 0) {
    throw new InvalidArgumentError(`rootfs ${path} is empty; ${howTo}`, { details: { path } });
  }
  // The ext superblock starts at byte 1024; s_magic (0xEF53, little-endian) is 56 bytes into it.
  if (head.length >= 1082 && head.readUInt16LE(1080) === 0xef53) return;
  let hint = 'it has no ext2/3/4 superblock';
  if (head.subarray(0, 4).toString('latin1') === 'QFI\xfb') {
    hint = 'it looks like a qcow2 image: convert it to raw and extract the filesystem';
  } else if (head.length >= 512 && head[510] === 0x55 && head[511] === 0xaa) {
    hint = 'it looks like a partitioned disk: banger needs the bare filesystem of the root partition';
  }
  throw new InvalidArgumentError(`rootfs ${path} is not an ext4 filesystem image (${hint}); ${howTo}`, {
    details: { path },
  });
}

/** Size of a rootfs image file in bytes (what the guest sees as its disk). */
export async function rootfsSizeBytes(path: string): Promise<number> {
  try {
    return (await stat(path)).size;
  } catch (err) {
    throw fileError(path, 'rootfs', err);
  }
}

function isElf(head: Buffer): boolean {
  return head.length >= 4 && head[0] === 0x7f && head.subarray(1, 4).toString('latin1') === 'ELF';
}

async function readHeader(path: string, position: number, length: number): Promise<Buffer> {
  const handle = await open(path, 'r');
  try {
    const buf = Buffer.alloc(length);
    const { bytesRead } = await handle.read(buf, 0, length, position);
    return buf.subarray(0, bytesRead);
  } finally {
    await handle.close();
  }
}

function fileError(path: string, what: string, err: unknown): InvalidArgumentError {
  const code = (err as NodeJS.ErrnoException).code;
  const reason =
    code === 'ENOENT'
      ? 'no such file'
      : code === 'EACCES' || code === 'EPERM'
        ? 'permission denied (not readable by this user)'
        : code === 'ENOTDIR'
          ? 'a parent is not a directory'
          : code === 'EISDIR'
            ? 'not a regular file'
            : (err as Error).message;
  return new InvalidArgumentError(`${what} ${path}: ${reason}`, { cause: err, details: { path } });
}
