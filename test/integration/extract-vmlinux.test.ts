// Runs scripts/extract-vmlinux.sh on fake bzImages carrying a real ELF file compressed in each format.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';

const script = join(import.meta.dirname, '..', '..', 'scripts', 'extract-vmlinux.sh');
const PATH = `/usr/sbin:/usr/bin:/sbin:/bin:${process.env.PATH ?? ''}`;
const elfPath = '/bin/bash';

let dir: string;
let elf: Buffer;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'banger-extract-'));
  elf = readFileSync(elfPath);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const hasTool = (tool: string) => spawnSync('sh', ['-c', `command -v ${tool}`], { env: { PATH } }).status === 0;

/** Compresses data with a host tool reading stdin. */
function compressWith(argv: string[], data: Buffer): Buffer {
  return execFileSync(argv[0], argv.slice(1), { input: data, env: { PATH }, maxBuffer: 1 << 28 });
}

/**
 * A bzImage-like file: boot sector and "HdrS" setup header, setup code holding false signatures of every
 * format, the compressed payload, then the payload's uncompressed size as the kernel appends it.
 */
function fakeBzImage(payload: Buffer): Buffer {
  const setup = randomBytes(0x4000);
  setup[510] = 0x55;
  setup[511] = 0xaa;
  setup.write('HdrS', 0x202, 'latin1');
  const decoys = [
    [0x1f, 0x8b, 0x08],
    [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00],
    [0x28, 0xb5, 0x2f, 0xfd],
    [0x02, 0x21, 0x4c, 0x18],
    [0x5d, 0x00, 0x00],
    [0x42, 0x5a, 0x68, 0x39, 0x31, 0x41, 0x59, 0x26, 0x53, 0x59],
  ];
  decoys.forEach((bytes, i) => Buffer.from(bytes).copy(setup, 0x1000 + i * 0x200));
  const size = Buffer.alloc(4);
  size.writeUInt32LE(elf.length);
  return Buffer.concat([setup, payload, size, Buffer.alloc(512)]);
}

function extract(input: string, output: string) {
  return spawnSync(script, [input, output], { encoding: 'utf8', env: { PATH, TMPDIR: dir } });
}

const formats: Array<{ name: string; tool: string | null; compress: (d: Buffer) => Buffer }> = [
  { name: 'gzip', tool: null, compress: (d) => gzipSync(d, { level: 9 }) },
  { name: 'lz4', tool: 'lz4', compress: (d) => compressWith(['lz4', '-l', '-9', '-c'], d) },
  { name: 'xz', tool: 'xz', compress: (d) => compressWith(['xz', '--check=crc32', '-c'], d) },
  { name: 'zstd', tool: 'zstd', compress: (d) => compressWith(['zstd', '-q', '-c'], d) },
  { name: 'bzip2', tool: 'bzip2', compress: (d) => compressWith(['bzip2', '-c'], d) },
  { name: 'lzma', tool: 'xz', compress: (d) => compressWith(['xz', '--format=lzma', '-c'], d) },
];

describe('extract-vmlinux.sh', () => {
  for (const format of formats) {
    const missing = format.tool !== null && !hasTool(format.tool);
    if (missing) console.log(`skipping the ${format.name} extraction test: ${format.tool} is not installed`);
    it.skipIf(missing)(`gives back the ELF byte for byte from a ${format.name} payload, past false signatures`, () => {
      const bzImage = join(dir, `bzImage-${format.name}`);
      writeFileSync(bzImage, fakeBzImage(format.compress(elf)));
      const out = join(dir, `vmlinux-${format.name}`);
      const run = extract(bzImage, out);
      expect(run.stderr).toBe('');
      expect(run.status).toBe(0);
      expect(run.stdout).toMatch(new RegExp(`ELF vmlinux from the ${format.name} payload at offset \\d+`));
      expect(readFileSync(out).equals(elf)).toBe(true);
    });
  }

  it('copies a file that is already an ELF', () => {
    const out = join(dir, 'vmlinux-copy');
    const run = extract(elfPath, out);
    expect(run.status).toBe(0);
    expect(run.stdout).toContain('already an ELF vmlinux');
    expect(readFileSync(out).equals(elf)).toBe(true);
  });

  it('fails clearly when no payload decompresses to an ELF, writing nothing', () => {
    const bzImage = join(dir, 'bzImage-text');
    writeFileSync(bzImage, fakeBzImage(gzipSync(Buffer.from('just text, not a kernel\n'.repeat(100)))));
    const out = join(dir, 'vmlinux-none');
    const run = extract(bzImage, out);
    expect(run.status).toBe(1);
    expect(run.stderr).toMatch(new RegExp(`^extract-vmlinux.sh: no compressed ELF kernel found in ${bzImage}\n`));
    expect(run.stderr).toMatch(/\d+ gzip candidate\(s\) gave no ELF/);
    expect(existsSync(out)).toBe(false);
    expect(readdirSync(dir).filter((f) => f.includes('partial') || f.startsWith('extract-vmlinux'))).toEqual([]);
  });

  it('says when a file has no compression signature at all', () => {
    const plain = join(dir, 'plain');
    writeFileSync(plain, Buffer.alloc(4096, 0x41));
    const run = extract(plain, join(dir, 'out-plain'));
    expect(run.status).toBe(1);
    expect(run.stderr).toContain('no gzip, xz, zstd, lz4, bzip2 or lzma signature in it');
  });

  it('names a missing input and prints usage for wrong arguments', () => {
    const missing = join(dir, 'no-such-bzImage');
    const run = extract(missing, join(dir, 'x'));
    expect(run.status).toBe(2);
    expect(run.stderr).toBe(`extract-vmlinux.sh: kernel ${missing}: no such file\n`);
    const usage = spawnSync(script, [], { encoding: 'utf8', env: { PATH } });
    expect(usage.status).toBe(2);
    expect(usage.stderr).toBe('usage: extract-vmlinux.sh BZIMAGE OUT\n');
  });
});
