import { describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '../../src/core/errors.js';
import { formatSize, parseSize } from '../../src/core/size.js';

describe('parseSize', () => {
  it.each([
    ['12345', 12345],
    ['0', 0],
    ['100K', 100 * 1024],
    ['512M', 512 * 1024 ** 2],
    ['4G', 4 * 1024 ** 3],
    ['2T', 2 * 1024 ** 4],
    ['4GiB', 4 * 1024 ** 3],
    ['512MiB', 512 * 1024 ** 2],
    ['100KiB', 100 * 1024],
    ['4g', 4 * 1024 ** 3],
    ['4 GiB', 4 * 1024 ** 3],
    ['  8M ', 8 * 1024 ** 2],
    ['1.5G', 1.5 * 1024 ** 3],
    ['1.5K', 1536],
    ['0.5M', 512 * 1024],
    ['512B', 512],
  ])('reads %j as %d bytes with binary units', (text, bytes) => {
    expect(parseSize(text)).toBe(bytes);
  });

  it('accepts a whole non-negative number of bytes given as a number', () => {
    expect(parseSize(1048576)).toBe(1048576);
    expect(() => parseSize(1.5)).toThrow(InvalidArgumentError);
    expect(() => parseSize(-1)).toThrow(InvalidArgumentError);
  });

  it('refuses negative sizes and says so', () => {
    expect(() => parseSize('-4G')).toThrow(/cannot be negative/);
    expect(() => parseSize('-1')).toThrow(InvalidArgumentError);
  });

  it('refuses fractions that are not a whole number of bytes', () => {
    expect(() => parseSize('0.1K')).toThrow(/not a whole number of bytes/);
    expect(() => parseSize('1.5')).toThrow(InvalidArgumentError);
  });

  it.each(['', 'G', 'abc', '4X', '4 G B', '1e9', '0x10', '4.G', '.5G', 'Infinity', '4GG'])(
    'refuses %j with a message naming the accepted forms',
    (text) => {
      let caught: unknown;
      try {
        parseSize(text);
      } catch (err) {
        caught = err;
      }
      expect(caught).toBeInstanceOf(InvalidArgumentError);
      expect((caught as Error).message).toMatch(/invalid size/);
      expect((caught as Error).message).toMatch(/"512M", "4G"/);
    },
  );

  it('refuses sizes beyond what a number holds exactly', () => {
    expect(() => parseSize('99999999T')).toThrow(/too large/);
  });
});

describe('formatSize', () => {
  it.each([
    [0, '0 B'],
    [123, '123 B'],
    [1024, '1 KiB'],
    [1536, '1.5 KiB'],
    [512 * 1024 ** 2, '512 MiB'],
    [4 * 1024 ** 3, '4 GiB'],
    [1.5 * 1024 ** 3, '1.5 GiB'],
    [1234567, '1.18 MiB'],
    [3 * 1024 ** 4, '3 TiB'],
  ])('formats %d bytes as %j', (bytes, text) => {
    expect(formatSize(bytes)).toBe(text);
  });

  it('round-trips exact sizes through parseSize', () => {
    for (const bytes of [0, 512, 4096, 100 * 1024, 512 * 1024 ** 2, 6 * 1024 ** 3, 1.5 * 1024 ** 3]) {
      expect(parseSize(formatSize(bytes))).toBe(bytes);
    }
  });
});
