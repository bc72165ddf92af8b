// Loop devices through `losetup`: pure argv builders and output parsers, and the small functions
// that run them. Detaching a device that is already gone counts as success.
import { HostCommandError, InternalError } from '../core/errors.js';
import type { Runner } from '../core/ports.js';

/** One row of `losetup -J`. */
export interface LoopDevice {
  /** "/dev/loop3" */
  name: string;
  /** The backing file as the kernel prints it; " (deleted)" is stripped into isBackingFileDeleted. */
  backingFile: string;
  isBackingFileDeleted: boolean;
  isReadOnly: boolean;
  isAutoclear: boolean;
  offset: number;
  sizeLimit: number;
}

/** A row of `losetup -j FILE`. */
export interface AssociatedLoop {
  name: string;
  backingFile: string;
}

export function attachLoopArgv(file: string, options: { readOnly?: boolean } = {}): string[] {
  return ['losetup', '--find', '--show', ...(options.readOnly ? ['--read-only'] : []), file];
}

export function detachLoopArgv(dev: string): string[] {
  return ['losetup', '-d', dev];
}

export function findLoopsArgv(file: string): string[] {
  return ['losetup', '-j', file];
}

export function listLoopsArgv(): string[] {
  return ['losetup', '-J'];
}

/** `losetup --find --show` prints the device it attached: "/dev/loop3\n". */
export function parseAttachedLoop(stdout: string): string {
  const dev = stdout.trim();
  if (!/^\/dev\/loop\d+$/.test(dev)) throw new InternalError(`unexpected losetup output: ${JSON.stringify(stdout)}`);
  return dev;
}

// `losetup -j FILE` rows: "/dev/loop0: [65024]:2146786 (/var/lib/img.ext4)", optionally followed
// by ", offset 512" or ", sizelimit 1024". The file is matched by device and inode, not by name.
const ASSOCIATED_ROW = /^(\/dev\/loop\d+): \[[^\]]*\]:\d+ \((.*)\)(?:, offset \d+)?(?:, sizelimit \d+)?$/;

export function parseAssociatedLoops(stdout: string): AssociatedLoop[] {
  const out: AssociatedLoop[] = [];
  for (const line of stdout.split('\n')) {
    if (!line.trim()) continue;
    const m = ASSOCIATED_ROW.exec(line.trim());
    if (!m) throw new InternalError(`unexpected losetup -j output line: ${JSON.stringify(line)}`);
    out.push({ name: m[1], backingFile: m[2] });
  }
  return out;
}

const DELETED_SUFFIX = ' (deleted)';

// `losetup -J`: {"loopdevices": [{"name": "/dev/loop0", "sizelimit": 0, "offset": 0,
// "autoclear": false, "ro": true, "back-file": "/tmp/a.img", "dio": false, "log-sec": 512}]}.
// Older util-linux prints nothing at all when no device is attached, and some print numbers
// and booleans as strings ("0", "1").
export function parseLoopList(stdout: string): LoopDevice[] {
  if (!stdout.trim()) return [];
  let doc: unknown;
  try {
    doc = JSON.parse(stdout);
  } catch (err) {
    throw new InternalError(`unexpected losetup -J output: ${(err as Error).message}`, { cause: err });
  }
  const rows = (doc as { loopdevices?: unknown }).loopdevices;
  if (!Array.isArray(rows)) throw new InternalError('unexpected losetup -J output: no "loopdevices" array');
  return rows.map((row: Record<string, unknown>) => {
    const raw = String(row['back-file'] ?? '');
    const isBackingFileDeleted = raw.endsWith(DELETED_SUFFIX);
    return {
      name: String(row.name),
      backingFile: isBackingFileDeleted ? raw.slice(0, -DELETED_SUFFIX.length) : raw,
      isBackingFileDeleted,
      isReadOnly: toBool(row.ro),
      isAutoclear: toBool(row.autoclear),
      offset: Number(row.offset ?? 0),
      sizeLimit: Number(row.sizelimit ?? 0),
    };
  });
}

function toBool(v: unknown): boolean {
  return v === true || v === 1 || v === '1' || v === 'true';
}

// losetup -d on a free device: "losetup: /dev/loop0: detach failed: No such device or address";
// on a device node that does not exist: "losetup: /dev/loop99: failed to use device: No such device".
export function isLoopGoneError(err: unknown): boolean {
  return (
    err instanceof HostCommandError &&
    err.exitCode !== null &&
    /No such device or address|No such device|No such file or directory/.test(err.stderr)
  );
}

/** Attaches FILE to the first free loop device and returns its path. */
export async function attachLoop(runner: Runner, file: string, options: { readOnly?: boolean } = {}): Promise<string> {
  const { stdout } = await runner.run(attachLoopArgv(file, options));
  return parseAttachedLoop(stdout);
}

/** Detaches DEV; a device that is already free or absent counts as detached. */
export async function detachLoop(runner: Runner, dev: string): Promise<void> {
  try {
    await runner.run(detachLoopArgv(dev));
  } catch (err) {
    if (isLoopGoneError(err)) return;
    throw err;
  }
}

/** Loop devices whose backing file is FILE (same device and inode), e.g. ["/dev/loop0"]. */
export async function findLoopsByBackingFile(runner: Runner, file: string): Promise<string[]> {
  const { stdout } = await runner.run(findLoopsArgv(file));
  return parseAssociatedLoops(stdout).map((l) => l.name);
}

export async function listLoops(runner: Runner): Promise<LoopDevice[]> {
  const { stdout } = await runner.run(listLoopsArgv());
  return parseLoopList(stdout);
}
