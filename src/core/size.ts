// Human sizes <-> bytes. Units are binary: "4G" and "4GiB" are both 4 * 2^30 bytes.
import { InvalidArgumentError } from './errors.js';

const UNITS: Record<string, number> = {
  '': 0,
  b: 0,
  k: 1,
  kb: 1,
  kib: 1,
  m: 2,
  mb: 2,
  mib: 2,
  g: 3,
  gb: 3,
  gib: 3,
  t: 4,
  tb: 4,
  tib: 4,
};

const ACCEPTED = 'a whole number of bytes ("12345") or a number with a binary unit K, M, G or T ("512M", "4G", "1.5GiB")';

const SIZE_PATTERN = /^(\d+)(?:\.(\d+))?\s*([a-z]*)$/i;

/** Parses "4G", "512M", "100K", "1.5GiB" or "12345" into bytes; throws InvalidArgumentError otherwise. */
export function parseSize(input: string | number): number {
  if (typeof input === 'number') {
    if (Number.isSafeInteger(input) && input >= 0) return input;
    throw new InvalidArgumentError(`invalid size ${input}: expected ${ACCEPTED}`);
  }
  const text = String(input).trim();
  const m = SIZE_PATTERN.exec(text);
  if (!m) {
    const why = text.startsWith('-') ? `sizes cannot be negative; expected ${ACCEPTED}` : `expected ${ACCEPTED}`;
    throw new InvalidArgumentError(`invalid size "${input}": ${why}`);
  }
  const [, whole, fraction = '', unitText] = m;
  const power = UNITS[unitText.toLowerCase()];
  if (power === undefined) {
    throw new InvalidArgumentError(`invalid size "${input}": unknown unit "${unitText}"; expected ${ACCEPTED}`);
  }
  // Exact arithmetic: "1.5K" is 1536 bytes, "0.1K" (102.4 bytes) is refused.
  const scale = 10n ** BigInt(fraction.length);
  const numerator = (BigInt(whole) * scale + BigInt(fraction || '0')) * 1024n ** BigInt(power);
  if (numerator % scale !== 0n) {
    throw new InvalidArgumentError(`invalid size "${input}": not a whole number of bytes; expected ${ACCEPTED}`);
  }
  const bytes = numerator / scale;
  if (bytes > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new InvalidArgumentError(`invalid size "${input}": too large`);
  }
  return Number(bytes);
}

const FORMAT_UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];

/** Formats bytes for people: "4 GiB", "1.5 GiB", "512 MiB", "123 B" (at most two decimals). */
export function formatSize(bytes: number): string {
  if (!Number.isFinite(bytes) || bytes < 0) throw new InvalidArgumentError(`invalid size ${bytes}`);
  let power = 0;
  while (power < FORMAT_UNITS.length - 1 && bytes >= 1024 ** (power + 1)) power++;
  const value = bytes / 1024 ** power;
  const text = Number.isInteger(value) ? String(value) : String(Number(value.toFixed(2)));
  return `${text} ${FORMAT_UNITS[power]}`;
}
