// Device-mapper through `dmsetup`: pure table builders and output parsers, and the small functions
// that run them. Tables are in 512-byte sectors. Removing a device that is already gone counts as
// success; removing a busy one is retried a few times (udev or a closing process may still hold it).
import { HostCommandError, InternalError, InvalidArgumentError } from '../core/errors.js';
import { systemClock, type Clock, type Runner } from '../core/ports.js';

/** dm snapshot chunk size in sectors (8 = 4 KiB). */
export const DEFAULT_CHUNK_SECTORS = 8;

export function dmDevicePath(name: string): string {
  return `/dev/mapper/${name}`;
}

/** The VM's writable root disk: "banger-<id>". */
export function snapshotDmName(vmId: string): string {
  return `banger-${vmId}`;
}

/** The zero-padded origin under a disk larger than its image: "banger-<id>-origin". */
export function originDmName(vmId: string): string {
  return `banger-${vmId}-origin`;
}

function checkSectors(what: string, n: number): void {
  if (!Number.isSafeInteger(n) || n <= 0) throw new InvalidArgumentError(`${what} must be a positive whole number of sectors, got ${n}`);
}

// Persistent snapshot, sizes in 512-byte sectors: "0 2097152 snapshot /dev/loop3 /dev/loop4 P 8"
// (kernel docs: admin-guide/device-mapper/snapshot.rst).
export function snapshotTable(originSectors: number, originDev: string, cowDev: string, chunk = DEFAULT_CHUNK_SECTORS): string {
  checkSectors('origin size', originSectors);
  checkSectors('chunk size', chunk);
  return `0 ${originSectors} snapshot ${originDev} ${cowDev} P ${chunk}`;
}

// The image followed by zeroes up to the disk size:
//   "0 524288 linear /dev/loop3 0"
//   "524288 1572864 zero"
export function paddedOriginTable(baseDev: string, baseSectors: number, totalSectors: number): string {
  checkSectors('base size', baseSectors);
  checkSectors('total size', totalSectors);
  if (totalSectors <= baseSectors) {
    throw new InvalidArgumentError(`padded origin must be larger than its base (${totalSectors} <= ${baseSectors} sectors)`);
  }
  return `0 ${baseSectors} linear ${baseDev} 0\n${baseSectors} ${totalSectors - baseSectors} zero`;
}

/**
 * Bytes a persistent COW device needs so that the snapshot can never fill up, even when every
 * chunk of the origin is rewritten. Layout (dm-snap-persistent.c): chunk 0 is the header, then
 * areas of one metadata chunk followed by chunkBytes/16 data chunks (16-byte exception records).
 */
export function cowBytesFor(originSectors: number, chunk = DEFAULT_CHUNK_SECTORS): number {
  checkSectors('origin size', originSectors);
  const dataChunks = Math.ceil(originSectors / chunk);
  const exceptionsPerArea = (chunk * 512) / 16;
  const metadataChunks = Math.ceil(dataChunks / exceptionsPerArea);
  return (1 + metadataChunks + dataChunks) * chunk * 512;
}

/** `dmsetup create [--readonly] NAME`; the table goes to stdin. */
export function createDmArgv(name: string, options: { readOnly?: boolean } = {}): string[] {
  return ['dmsetup', 'create', ...(options.readOnly ? ['--readonly'] : []), name];
}

export function removeDmArgv(name: string): string[] {
  return ['dmsetup', 'remove', name];
}

export function dmInfoArgv(name: string): string[] {
  return ['dmsetup', 'info', name];
}

export function listDmArgv(): string[] {
  return ['dmsetup', 'ls'];
}

export function dmTargetsArgv(): string[] {
  return ['dmsetup', 'targets'];
}

export interface DmInfo {
  name: string;
  isSuspended: boolean;
  isReadOnly: boolean;
  openCount: number;
  major: number;
  minor: number;
}

// `dmsetup info NAME`:
//   Name:              banger-0123456789ab
//   State:             ACTIVE (READ-ONLY)
//   Open count:        1
//   Major, minor:      253, 0
export function parseDmInfo(stdout: string): DmInfo {
  const fields = new Map<string, string>();
  for (const line of stdout.split('\n')) {
    const i = line.indexOf(':');
    if (i > 0) fields.set(line.slice(0, i).trim(), line.slice(i + 1).trim());
  }
  const name = fields.get('Name');
  const state = fields.get('State') ?? '';
  const mm = /^(\d+),\s*(\d+)$/.exec(fields.get('Major, minor') ?? '');
  if (!name || !mm) throw new InternalError(`unexpected dmsetup info output: ${JSON.stringify(stdout)}`);
  return {
    name,
    isSuspended: state.startsWith('SUSPENDED'),
    isReadOnly: state.includes('READ-ONLY'),
    openCount: Number(fields.get('Open count') ?? 0),
    major: Number(mm[1]),
    minor: Number(mm[2]),
  };
}

export interface DmListEntry {
  name: string;
  major: number;
  minor: number;
}

// `dmsetup ls`: "banger-0123456789ab\t(253:0)" per device (older versions: "(253, 0)"),
// or "No devices found".
export function parseDmList(stdout: string): DmListEntry[] {
  const out: DmListEntry[] = [];
  for (const line of stdout.split('\n')) {
    if (!line.trim() || line.trim() === 'No devices found') continue;
    const m = /^(\S+)\s+\((\d+)(?::|,\s*)(\d+)\)$/.exec(line.trim());
    if (!m) throw new InternalError(`unexpected dmsetup ls output line: ${JSON.stringify(line)}`);
    out.push({ name: m[1], major: Number(m[2]), minor: Number(m[3]) });
  }
  return out;
}

// `dmsetup targets`: "snapshot         v1.16.0" per loaded target.
export function parseDmTargets(stdout: string): { name: string; version: string }[] {
  return stdout
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean)
    .map((l) => {
      const [name, version = ''] = l.split(/\s+/);
      return { name, version };
    });
}

// Failed dmsetup calls end with "Command failed." on stderr; the first line says what happened,
// the others are hints: "device-mapper: remove ioctl on banger-0123456789ab  failed: Device or
// resource busy", or "/dev/mapper/control: open failed: No such device" then "Failure to
// communicate with kernel device-mapper driver." ... HostCommandError's message shows the last
// line, so the first one is moved there.
function withUsefulMessage(err: unknown): unknown {
  if (!(err instanceof HostCommandError)) return err;
  const lines = err.stderr.split('\n').filter((l) => l.trim() && l.trim() !== 'Command failed.');
  if (lines.length === 0) return err;
  return new HostCommandError({
    argv: err.argv,
    exitCode: err.exitCode,
    signal: err.signal,
    stdout: err.stdout,
    stderr: [...lines.slice(1), lines[0]].join('\n'),
    timedOut: err.timedOut,
    cause: err.cause,
  });
}

export function isDmBusyError(err: unknown): boolean {
  return err instanceof HostCommandError && /Device or resource busy/.test(err.stderr);
}

// Already gone: "device-mapper: remove ioctl on NAME  failed: No such device or address". With no
// device-mapper driver at all ("/dev/mapper/control: open failed: No such device") no mapping can
// exist either.
export function isDmGoneError(err: unknown): boolean {
  return (
    err instanceof HostCommandError &&
    err.exitCode !== null &&
    /ioctl on .* failed: No such device or address|Device does not exist|\/dev\/mapper\/control: open failed: No such (device|file or directory)/.test(
      err.stderr,
    )
  );
}

/** Creates NAME from TABLE. A read-only table is needed for linear mappings over read-only loops. */
export async function createDm(runner: Runner, name: string, table: string, options: { readOnly?: boolean } = {}): Promise<void> {
  try {
    await runner.run(createDmArgv(name, options), { input: `${table}\n` });
  } catch (err) {
    throw withUsefulMessage(err);
  }
}

export interface RemoveDmOptions {
  clock?: Clock;
  /** Total tries while the device is busy (default 5). */
  attempts?: number;
  /** Pause between tries (default 200 ms). */
  delayMs?: number;
}

/** Removes NAME, retrying while it is busy; a device that is already gone counts as removed. */
export async function removeDm(runner: Runner, name: string, options: RemoveDmOptions = {}): Promise<void> {
  const clock = options.clock ?? systemClock;
  const attempts = Math.max(1, options.attempts ?? 5);
  const delayMs = options.delayMs ?? 200;
  for (let attempt = 1; ; attempt++) {
    try {
      await runner.run(removeDmArgv(name));
      return;
    } catch (err) {
      if (isDmGoneError(err)) return;
      if (!isDmBusyError(err) || attempt >= attempts) throw withUsefulMessage(err);
      await clock.sleep(delayMs);
    }
  }
}

/** Probe: NAME's info, or null when it does not exist (or device-mapper cannot be asked). */
export async function dmInfo(runner: Runner, name: string): Promise<DmInfo | null> {
  try {
    const res = await runner.run(dmInfoArgv(name), { check: false });
    return res.exitCode === 0 ? parseDmInfo(res.stdout) : null;
  } catch {
    return null;
  }
}

export async function listDm(runner: Runner): Promise<DmListEntry[]> {
  try {
    const { stdout } = await runner.run(listDmArgv());
    return parseDmList(stdout);
  } catch (err) {
    throw withUsefulMessage(err);
  }
}

/** Probe: whether the kernel has the snapshot target loaded. False when dmsetup cannot ask. */
export async function hasSnapshotTarget(runner: Runner): Promise<boolean> {
  try {
    const res = await runner.run(dmTargetsArgv(), { check: false });
    return res.exitCode === 0 && parseDmTargets(res.stdout).some((t) => t.name === 'snapshot');
  } catch {
    return false;
  }
}
