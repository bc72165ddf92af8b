// What both root disk strategies share: choosing the strategy (SPEC 5) and checking, measuring and
// growing the ext4 filesystem on a disk (a /dev/mapper device or a plain file).
import { existsSync } from 'node:fs';
import { FailedPreconditionError, HostCommandError, InvalidArgumentError } from '../core/errors.js';
import type { Runner } from '../core/ports.js';
import { hasSnapshotTarget } from './dm.js';

export type RootfsStrategy = 'dm' | 'copy';
export type RequestedStrategy = 'auto' | RootfsStrategy;

export interface StrategyChoice {
  strategy: RootfsStrategy;
  /** One sentence for `banger doctor`. */
  reason: string;
}

export interface SelectStrategyOptions {
  /** Whether /dev/mapper/control exists; replaceable in tests. */
  hasMapperControl?: () => boolean | Promise<boolean>;
}

const MAPPER_CONTROL = '/dev/mapper/control';

/**
 * `auto` picks dm when /dev/mapper/control exists and `dmsetup targets` lists snapshot, else copy.
 * The node alone proves little: libdevmapper creates it on first use even without a kernel driver.
 */
export async function selectStrategy(
  runner: Runner,
  requested: RequestedStrategy,
  options: SelectStrategyOptions = {},
): Promise<StrategyChoice> {
  if (requested !== 'auto' && requested !== 'dm' && requested !== 'copy') {
    throw new InvalidArgumentError(`unknown root disk strategy "${String(requested)}": expected auto, dm or copy`);
  }
  if (requested === 'copy') {
    return { strategy: 'copy', reason: 'copy was asked for (BANGER_ROOTFS_STRATEGY=copy)' };
  }
  const hasControl = await (options.hasMapperControl ?? (() => existsSync(MAPPER_CONTROL)))();
  const missing = !hasControl
    ? `${MAPPER_CONTROL} does not exist (no device-mapper driver; load it with: sudo modprobe dm_mod dm_snapshot)`
    : !(await hasSnapshotTarget(runner))
      ? '`dmsetup targets` does not list snapshot (load it with: sudo modprobe dm_snapshot)'
      : null;
  if (requested === 'dm') {
    if (missing) {
      throw new FailedPreconditionError(
        `the dm root disk strategy needs device-mapper snapshots, but ${missing}; or set BANGER_ROOTFS_STRATEGY=copy`,
      );
    }
    return { strategy: 'dm', reason: `dm was asked for, and ${MAPPER_CONTROL} exists and \`dmsetup targets\` lists snapshot` };
  }
  if (missing) return { strategy: 'copy', reason: `auto chose copy: ${missing}` };
  return { strategy: 'dm', reason: `auto chose dm: ${MAPPER_CONTROL} exists and \`dmsetup targets\` lists snapshot` };
}

export function fsckArgv(target: string): string[] {
  return ['e2fsck', '-fy', target];
}

export function resizeFsArgv(target: string): string[] {
  return ['resize2fs', target];
}

/** `debugfs -R "stats -h"` prints only the superblock ("Block count:  65536", "Block size:  4096"). */
export function fsStatsArgv(target: string): string[] {
  return ['debugfs', '-R', 'stats -h', target];
}

export interface FsSize {
  blockCount: number;
  blockSize: number;
  bytes: number;
}

export function parseFsStats(stdout: string): FsSize | null {
  const count = /^Block count:\s+(\d+)\s*$/m.exec(stdout);
  const size = /^Block size:\s+(\d+)\s*$/m.exec(stdout);
  if (!count || !size) return null;
  const blockCount = Number(count[1]);
  const blockSize = Number(size[1]);
  return { blockCount, blockSize, bytes: blockCount * blockSize };
}

/** Size of the ext4 filesystem on TARGET (a device or an image file). */
export async function readFilesystemSize(runner: Runner, target: string): Promise<FsSize> {
  const argv = fsStatsArgv(target);
  const res = await runner.run(argv, { check: false });
  const stats = parseFsStats(res.stdout);
  if (res.exitCode === 0 && stats) return stats;
  // debugfs exits 0 even when it cannot open the target; its reason is on stderr:
  // "debugfs: No such file or directory while trying to open /dev/mapper/x".
  const lines = res.stderr.split('\n').filter((l) => l.trim() && !/^debugfs \d/.test(l));
  const reason = lines.find((l) => l.includes(' while ')) ?? lines.at(-1);
  throw new HostCommandError({ argv, exitCode: res.exitCode, stdout: res.stdout, stderr: reason ?? 'no ext4 superblock found' });
}

// e2fsck exit codes are bit flags: 1 = errors corrected, 2 = corrected and a reboot is advised
// (only meaningful for a mounted root), 4 and up = left uncorrected or failed.
export async function checkFilesystem(runner: Runner, target: string): Promise<void> {
  const argv = fsckArgv(target);
  const res = await runner.run(argv, { check: false, timeoutMs: 10 * 60_000 });
  if (res.exitCode >= 4) {
    throw new HostCommandError({ argv, exitCode: res.exitCode, stdout: res.stdout, stderr: res.stderr || res.stdout });
  }
}

/** Grows the filesystem to fill TARGET; resize2fs wants a fresh `e2fsck -f` first. */
export async function growFilesystem(runner: Runner, target: string): Promise<void> {
  await runner.run(resizeFsArgv(target), { timeoutMs: 10 * 60_000 });
}
