// Flag value parsers for commander: a bad value is a usage error (exit 2).
import { NAME_PATTERN } from '../core/models.js';
import { parseSize } from '../core/size.js';
import { UsageError } from './errors.js';
import { resolve } from 'node:path';

export function intFlag(flag: string, min: number, max: number) {
  return (v: string): number => {
    if (!/^\d+$/.test(v)) throw new UsageError(`${flag} must be a whole number, got "${v}"`);
    const n = Number(v);
    if (n < min || n > max) throw new UsageError(`${flag} must be between ${min} and ${max}, got ${n}`);
    return n;
  };
}

export function sizeFlag(flag: string) {
  return (v: string): number => {
    try {
      return parseSize(v);
    } catch (err) {
      throw new UsageError(`${flag}: ${(err as Error).message}`);
    }
  };
}

export function checkName(what: string, v: string): string {
  if (!NAME_PATTERN.test(v)) {
    throw new UsageError(`${what} "${v}" is not valid: use lowercase letters, digits and dashes, starting with a letter or digit, at most 63 characters`);
  }
  return v;
}

export function pathFlag(v: string): string {
  return resolve(v);
}
