// Block device sizes through `blockdev`. Sizes are in 512-byte sectors, whatever the device's block size.
import { InternalError } from '../core/errors.js';
import type { Runner } from '../core/ports.js';

export const SECTOR_BYTES = 512;

/** `blockdev --getsz DEV` prints the size in 512-byte sectors: "2097152". */
export function getSectorsArgv(dev: string): string[] {
  return ['blockdev', '--getsz', dev];
}

export function parseSectors(stdout: string): number {
  const text = stdout.trim();
  if (!/^\d+$/.test(text)) throw new InternalError(`unexpected blockdev output: ${JSON.stringify(stdout)}`);
  const n = Number(text);
  if (!Number.isSafeInteger(n)) throw new InternalError(`blockdev size out of range: ${text}`);
  return n;
}

export async function getSectors(runner: Runner, dev: string): Promise<number> {
  const { stdout } = await runner.run(getSectorsArgv(dev));
  return parseSectors(stdout);
}
