// A stateful fake of the disk tools banger runs: losetup, blockdev, dmsetup, e2fsck, resize2fs,
// debugfs, truncate and cp. Loop and mapper tables live in memory; files are real (tests use temp
// files), so loop sizes come from the files and truncate/cp really write. Answers, exit codes and
// messages follow the real tools (util-linux 2.38, lvm2 dmsetup, e2fsprogs 1.47), including the
// kernel's rules that matter: a snapshot may not be larger than its origin, a writable mapping
// over a read-only loop is refused, a mapped device cannot be removed while another one uses it,
// and `losetup -d` on a loop still in use only marks it for automatic clearing.
import { copyFileSync, existsSync, openSync, closeSync, statSync, truncateSync } from 'node:fs';
import { resolve } from 'node:path';
import { fail, ok, type FakeRunner } from './fake-runner.js';
import type { RunOptions, RunResult } from '../../src/core/ports.js';

export interface FakeLoop {
  name: string;
  /** Absolute path of the backing file as attached. */
  backingFile: string;
  /** Device and inode of the backing file (what `losetup -j` matches on). */
  fileDev: number;
  fileIno: number;
  isReadOnly: boolean;
  isAutoclear: boolean;
  /** Fixed at attach time, like the kernel's loop capacity. */
  sizeBytes: number;
}

export interface FakeDmTarget {
  start: number;
  length: number;
  type: string;
  args: string[];
}

export interface FakeDm {
  name: string;
  minor: number;
  isReadOnly: boolean;
  /** The table as given to `dmsetup create`, normalised to one line per target. */
  table: string;
  targets: FakeDmTarget[];
}

export interface FakeDiskOptions {
  /** Whether the kernel has device-mapper at all (default true). */
  hasDeviceMapper?: boolean;
  /** What `dmsetup targets` lists (default: the usual set, snapshot included). */
  targets?: string[];
  /** Loop devices the host has (default 64). */
  maxLoops?: number;
}

const DEFAULT_TARGETS = ['snapshot-merge', 'snapshot-origin', 'snapshot', 'striped', 'linear', 'zero', 'error'];
const NO_DM =
  '/dev/mapper/control: open failed: No such device\n' +
  'Failure to communicate with kernel device-mapper driver.\n' +
  'Check that device-mapper is available in the kernel.\n' +
  'Incompatible libdevmapper 1.02.185 (2022-05-18) and kernel driver (unknown version).\n' +
  'Command failed.\n';
const FS_BLOCK = 4096;

export class FakeDisk {
  readonly loops = new Map<string, FakeLoop>();
  readonly dms = new Map<string, FakeDm>();
  /** ext4 size in bytes per storage (a plain file, or the COW file behind a snapshot). */
  readonly filesystems = new Map<string, number>();
  hasDeviceMapper: boolean;
  targets: string[];
  private readonly maxLoops: number;
  private nextMinor = 0;
  private readonly busy = new Map<string, number>();
  /** Targets checked by `e2fsck -f` since their last resize (resize2fs insists on it). */
  private readonly checked = new Set<string>();

  constructor(opts: FakeDiskOptions = {}) {
    this.hasDeviceMapper = opts.hasDeviceMapper ?? true;
    this.targets = opts.targets ?? DEFAULT_TARGETS;
    this.maxLoops = opts.maxLoops ?? 64;
  }

  /** Makes the next `times` removals of mapper device NAME fail with EBUSY (held open elsewhere). */
  markBusy(name: string, times: number): void {
    this.busy.set(name, times);
  }

  /** Loop devices whose backing file is FILE. */
  loopsOn(file: string): FakeLoop[] {
    const abs = resolve(file);
    return [...this.loops.values()].filter((l) => l.backingFile === abs);
  }

  // ---- losetup ----

  losetup(argv: string[]): RunResult {
    const args = argv.slice(1);
    if (args[0] === '--find' || args[0] === '-f') return this.loAttach(args);
    if (args[0] === '-j' || args[0] === '--associated') return this.loAssociated(args[1]);
    if (args.length === 1 && (args[0] === '-J' || args[0] === '--json')) return this.loJson();
    if (args[0] === '-a' || args[0] === '--all') return ok([...this.loops.values()].map((l) => this.loRow(l)).join(''));
    if (args[0] === '-d' || args[0] === '--detach') return this.loDetach(args.slice(1));
    throw new Error(`fake losetup: unsupported arguments: ${args.join(' ')}`);
  }

  private loAttach(args: string[]): RunResult {
    let readOnly = false;
    let show = false;
    let file: string | undefined;
    for (const a of args) {
      if (a === '--find' || a === '-f') continue;
      else if (a === '--show') show = true;
      else if (a === '--read-only' || a === '-r') readOnly = true;
      else if (!a.startsWith('-') && file === undefined) file = a;
      else throw new Error(`fake losetup: unsupported argument: ${a}`);
    }
    if (!file) throw new Error('fake losetup: --find without a file');
    if (!existsSync(file)) return fail(1, `losetup: ${file}: failed to set up loop device: No such file or directory\n`);
    let n = 0;
    while (this.loops.has(`/dev/loop${n}`)) n++;
    if (n >= this.maxLoops) return fail(1, 'losetup: cannot find an unused loop device\n');
    const st = statSync(file);
    const name = `/dev/loop${n}`;
    this.loops.set(name, {
      name,
      backingFile: resolve(file),
      fileDev: Number(st.dev),
      fileIno: Number(st.ino),
      isReadOnly: readOnly,
      isAutoclear: false,
      sizeBytes: st.size,
    });
    return ok(show ? `${name}\n` : '');
  }

  private loRow(l: FakeLoop): string {
    return `${l.name}: [${l.fileDev}]:${l.fileIno} (${l.backingFile})\n`;
  }

  private loAssociated(file: string | undefined): RunResult {
    if (!file) throw new Error('fake losetup: -j without a file');
    // util-linux 2.38 prints nothing and exits 0 when the file does not exist.
    if (!existsSync(file)) return ok('');
    const st = statSync(file);
    const rows = [...this.loops.values()].filter((l) => l.fileDev === Number(st.dev) && l.fileIno === Number(st.ino));
    return ok(rows.map((l) => this.loRow(l)).join(''));
  }

  private loJson(): RunResult {
    const rows = [...this.loops.values()].map((l) => ({
      name: l.name,
      sizelimit: 0,
      offset: 0,
      autoclear: l.isAutoclear,
      ro: l.isReadOnly,
      'back-file': existsSync(l.backingFile) ? l.backingFile : `${l.backingFile} (deleted)`,
      dio: false,
      'log-sec': 512,
    }));
    return ok(`${JSON.stringify({ loopdevices: rows }, null, 3)}\n`);
  }

  private loDetach(devs: string[]): RunResult {
    if (devs.length === 0) throw new Error('fake losetup: -d without a device');
    let stderr = '';
    for (const dev of devs) {
      const loop = this.loops.get(dev);
      if (!loop) {
        stderr += /^\/dev\/loop\d+$/.test(dev) && Number(dev.slice(9)) < this.maxLoops
          ? `losetup: ${dev}: detach failed: No such device or address\n`
          : `losetup: ${dev}: failed to use device: No such device\n`;
        continue;
      }
      // The kernel refuses to tear down a loop that is open; it sets autoclear and reports success.
      if (this.isLoopHeld(dev)) loop.isAutoclear = true;
      else this.loops.delete(dev);
    }
    return stderr ? fail(1, stderr) : ok('');
  }

  private isLoopHeld(dev: string): boolean {
    return [...this.dms.values()].some((d) => this.devicesOf(d).includes(dev));
  }

  private clearAutoclearLoops(): void {
    for (const l of [...this.loops.values()]) if (l.isAutoclear && !this.isLoopHeld(l.name)) this.loops.delete(l.name);
  }

  // ---- blockdev ----

  /** Size in 512-byte sectors of a loop or mapper device, or null when it does not exist. */
  sectorsOf(dev: string): number | null {
    const loop = this.loops.get(dev);
    if (loop) return Math.floor(loop.sizeBytes / 512);
    const dm = this.dmByPath(dev);
    if (dm) return dm.targets.reduce((n, t) => n + t.length, 0);
    return null;
  }

  blockdev(argv: string[]): RunResult {
    if (argv[1] !== '--getsz' || argv.length !== 3) throw new Error(`fake blockdev: unsupported arguments: ${argv.slice(1).join(' ')}`);
    const sectors = this.sectorsOf(argv[2]);
    if (sectors === null) return fail(1, `blockdev: cannot open ${argv[2]}: No such file or directory\n`);
    return ok(`${sectors}\n`);
  }

  // ---- dmsetup ----

  private dmByPath(dev: string): FakeDm | undefined {
    return dev.startsWith('/dev/mapper/') ? this.dms.get(dev.slice('/dev/mapper/'.length)) : undefined;
  }

  private devicesOf(dm: FakeDm): string[] {
    const out: string[] = [];
    for (const t of dm.targets) {
      if (t.type === 'linear') out.push(t.args[0]);
      if (t.type === 'snapshot') out.push(t.args[0], t.args[1]);
    }
    return out;
  }

  private isDeviceReadOnly(dev: string): boolean {
    return this.loops.get(dev)?.isReadOnly ?? this.dmByPath(dev)?.isReadOnly ?? false;
  }

  dmsetup(argv: string[], options: RunOptions): RunResult {
    if (!this.hasDeviceMapper) return fail(1, NO_DM);
    const sub = argv[1];
    const rest = argv.slice(2);
    if (sub === 'create') return this.dmCreate(rest, options.input ?? '');
    if (sub === 'remove' && rest.length === 1) return this.dmRemove(rest[0]);
    if (sub === 'info' && rest.length === 1) return this.dmInfo(rest[0]);
    if (sub === 'ls' && rest.length === 0) {
      if (this.dms.size === 0) return ok('No devices found\n');
      return ok([...this.dms.values()].map((d) => `${d.name}\t(253:${d.minor})\n`).join(''));
    }
    if (sub === 'targets' && rest.length === 0) {
      return ok(this.targets.map((t) => `${t.padEnd(16)} v1.${t.length}.0\n`).join(''));
    }
    throw new Error(`fake dmsetup: unsupported arguments: ${argv.slice(1).join(' ')}`);
  }

  private dmCreate(args: string[], input: string): RunResult {
    let readOnly = false;
    let name: string | undefined;
    let tableText: string | undefined;
    for (let i = 0; i < args.length; i++) {
      const a = args[i];
      if (a === '--readonly' || a === '-r') readOnly = true;
      else if (a === '--table') tableText = args[++i];
      else if (!a.startsWith('-') && name === undefined) name = a;
      else throw new Error(`fake dmsetup: unsupported create argument: ${a}`);
    }
    if (!name) throw new Error('fake dmsetup: create without a name');
    const text = (tableText ?? input).split(/[\n;]/).map((l) => l.trim()).filter(Boolean);
    const reload = (why: string): RunResult => fail(1, `device-mapper: reload ioctl on ${name}  failed: ${why}\nCommand failed.\n`);
    if (this.dms.has(name)) return fail(1, `device-mapper: create ioctl on ${name}  failed: Device or resource busy\nCommand failed.\n`);
    if (text.length === 0) return reload('Invalid argument');
    const targets: FakeDmTarget[] = [];
    let next = 0;
    for (const line of text) {
      const [start, length, type, ...targs] = line.split(/\s+/);
      const t = { start: Number(start), length: Number(length), type, args: targs };
      if (!Number.isSafeInteger(t.start) || !Number.isSafeInteger(t.length) || t.length <= 0 || t.start !== next) return reload('Invalid argument');
      next = t.start + t.length;
      const why = this.checkTarget(t, readOnly);
      if (why) return reload(why);
      targets.push(t);
    }
    this.dms.set(name, { name, minor: this.nextMinor++, isReadOnly: readOnly, table: text.join('\n'), targets });
    return ok('');
  }

  /** The kernel's objection to a target line, or null. */
  private checkTarget(t: FakeDmTarget, tableReadOnly: boolean): string | null {
    const exists = (dev: string): boolean => this.sectorsOf(dev) !== null;
    if (t.type === 'zero') return t.args.length === 0 ? null : 'Invalid argument';
    if (t.type === 'linear') {
      const [dev, offset] = t.args;
      if (t.args.length !== 2 || !/^\d+$/.test(offset)) return 'Invalid argument';
      if (!exists(dev)) return 'No such device';
      if (!tableReadOnly && this.isDeviceReadOnly(dev)) return 'Permission denied';
      if (Number(offset) + t.length > (this.sectorsOf(dev) ?? 0)) return 'Invalid argument';
      return null;
    }
    if (t.type === 'snapshot') {
      if (!this.targets.includes('snapshot')) return 'Invalid argument';
      const [origin, cow, persistent, chunk] = t.args;
      if (t.args.length !== 4 || !/^(P|N|PO)$/i.test(persistent) || !/^\d+$/.test(chunk)) return 'Invalid argument';
      const chunkN = Number(chunk);
      if (chunkN < 8 || (chunkN & (chunkN - 1)) !== 0) return 'Invalid argument';
      if (!exists(origin) || !exists(cow)) return 'No such device';
      if (origin === cow) return 'Invalid argument';
      if (!tableReadOnly && this.isDeviceReadOnly(cow)) return 'Permission denied';
      if (t.start + t.length > (this.sectorsOf(origin) ?? 0)) return 'Invalid argument';
      return null;
    }
    return 'Invalid argument';
  }

  private dmRemove(name: string): RunResult {
    const dm = this.dms.get(name);
    const busy = `device-mapper: remove ioctl on ${name}  failed: Device or resource busy\nCommand failed.\n`;
    if (!dm) return fail(1, `device-mapper: remove ioctl on ${name}  failed: No such device or address\nCommand failed.\n`);
    const times = this.busy.get(name) ?? 0;
    if (times > 0) {
      this.busy.set(name, times - 1);
      return fail(1, busy);
    }
    if ([...this.dms.values()].some((d) => d !== dm && this.devicesOf(d).includes(`/dev/mapper/${name}`))) return fail(1, busy);
    this.dms.delete(name);
    this.clearAutoclearLoops();
    return ok('');
  }

  private dmInfo(name: string): RunResult {
    const dm = this.dms.get(name);
    if (!dm) return fail(1, 'Device does not exist.\nCommand failed.\n');
    const openCount = [...this.dms.values()].filter((d) => this.devicesOf(d).includes(`/dev/mapper/${name}`)).length;
    return ok(
      `Name:              ${name}\n` +
        `State:             ACTIVE${dm.isReadOnly ? ' (READ-ONLY)' : ''}\n` +
        'Read Ahead:        256\n' +
        'Tables present:    LIVE\n' +
        `Open count:        ${openCount}\n` +
        'Event number:      0\n' +
        `Major, minor:      253, ${dm.minor}\n` +
        `Number of targets: ${dm.targets.length}\n\n`,
    );
  }

  // ---- ext4 (e2fsck, resize2fs, debugfs) ----

  /** Where the filesystem seen through TARGET is stored, and its size when never resized. */
  private storageOf(target: string): { key: string | null; bytes: number } | null {
    const loop = this.loops.get(target);
    if (loop) return { key: loop.isReadOnly ? null : loop.backingFile, bytes: this.filesystems.get(loop.backingFile) ?? loop.sizeBytes };
    const dm = this.dmByPath(target);
    if (dm) {
      const snap = dm.targets.find((t) => t.type === 'snapshot');
      if (snap) {
        const cowFile = this.loops.get(snap.args[1])?.backingFile ?? snap.args[1];
        const below = this.storageOf(snap.args[0]);
        return { key: cowFile, bytes: this.filesystems.get(cowFile) ?? below?.bytes ?? 0 };
      }
      const linear = dm.targets.find((t) => t.type === 'linear');
      const below = linear ? this.storageOf(linear.args[0]) : null;
      return { key: null, bytes: below?.bytes ?? 0 };
    }
    if (target.startsWith('/dev/')) return null;
    if (!existsSync(target)) return null;
    const abs = resolve(target);
    return { key: abs, bytes: this.filesystems.get(abs) ?? statSync(abs).size };
  }

  private targetBytes(target: string): number {
    const sectors = this.sectorsOf(target);
    return sectors !== null ? sectors * 512 : statSync(target).size;
  }

  e2fsck(argv: string[]): RunResult {
    const target = argv[argv.length - 1];
    if (argv.length !== 3 || argv[1] !== '-fy') throw new Error(`fake e2fsck: unsupported arguments: ${argv.slice(1).join(' ')}`);
    if (!this.storageOf(target)) {
      return fail(8, `e2fsck 1.47.0 (5-Feb-2023)\ne2fsck: No such file or directory while trying to open ${target}\nPossibly non-existent device?\n`);
    }
    this.checked.add(target);
    return ok(`Pass 1: Checking inodes, blocks, and sizes\nPass 5: Checking group summary information\n${target}: clean\n`);
  }

  resize2fs(argv: string[]): RunResult {
    if (argv.length !== 2) throw new Error(`fake resize2fs: unsupported arguments: ${argv.slice(1).join(' ')}`);
    const target = argv[1];
    const st = this.storageOf(target);
    if (!st) return fail(1, `resize2fs 1.47.0 (5-Feb-2023)\nresize2fs: No such file or directory while trying to open ${target}\nCouldn't find valid filesystem superblock.\n`);
    const want = Math.floor(this.targetBytes(target) / FS_BLOCK) * FS_BLOCK;
    if (st.bytes >= want) return ok(`The filesystem is already ${st.bytes / FS_BLOCK} (4k) blocks long.  Nothing to do!\n\n`);
    if (!this.checked.has(target)) return fail(1, `resize2fs 1.47.0 (5-Feb-2023)\nPlease run 'e2fsck -f ${target}' first.\n\n`);
    if (st.key === null) return fail(1, `resize2fs 1.47.0 (5-Feb-2023)\nresize2fs: Attempt to write block to filesystem resulted in short write while trying to resize ${target}\n`);
    this.checked.delete(target);
    this.filesystems.set(st.key, want);
    return ok(`Resizing the filesystem on ${target} to ${want / FS_BLOCK} (4k) blocks.\nThe filesystem on ${target} is now ${want / FS_BLOCK} (4k) blocks long.\n\n`);
  }

  debugfs(argv: string[]): RunResult {
    if (argv.length !== 4 || argv[1] !== '-R' || argv[2] !== 'stats -h') {
      throw new Error(`fake debugfs: unsupported arguments: ${argv.slice(1).join(' ')}`);
    }
    const target = argv[3];
    const st = this.storageOf(target);
    // debugfs exits 0 even when it cannot open the target.
    if (!st) return { exitCode: 0, stdout: '', stderr: `debugfs 1.47.0 (5-Feb-2023)\ndebugfs: No such file or directory while trying to open ${target}\nstats: Filesystem not open\n` };
    return ok(`Filesystem magic number:  0xEF53\nBlock count:              ${Math.floor(st.bytes / FS_BLOCK)}\nBlock size:               ${FS_BLOCK}\n`);
  }

  // ---- files ----

  truncate(argv: string[]): RunResult {
    if (argv.length !== 4 || argv[1] !== '-s' || !/^\d+$/.test(argv[2])) throw new Error(`fake truncate: unsupported arguments: ${argv.slice(1).join(' ')}`);
    const file = argv[3];
    try {
      closeSync(openSync(file, 'a'));
      truncateSync(file, Number(argv[2]));
    } catch (err) {
      return fail(1, `truncate: cannot open '${file}' for writing: ${(err as Error).message}\n`);
    }
    return ok('');
  }

  cp(argv: string[]): RunResult {
    const args = argv.slice(1);
    const files = args.filter((a) => !a.startsWith('-'));
    const flags = args.filter((a) => a.startsWith('-'));
    if (files.length !== 2 || flags.some((f) => !/^--(reflink|sparse)(=\w+)?$/.test(f))) throw new Error(`fake cp: unsupported arguments: ${args.join(' ')}`);
    const [src, dst] = files;
    if (!existsSync(src)) return fail(1, `cp: cannot stat '${src}': No such file or directory\n`);
    try {
      copyFileSync(src, dst);
    } catch (err) {
      return fail(1, `cp: cannot create regular file '${dst}': ${(err as Error).message}\n`);
    }
    this.filesystems.set(resolve(dst), this.filesystems.get(resolve(src)) ?? statSync(src).size);
    return ok('');
  }
}

/** Registers the fake disk tools on FAKE and returns their state for assertions. */
export function installFakeDisk(fake: FakeRunner, opts: FakeDiskOptions = {}): FakeDisk {
  const disk = new FakeDisk(opts);
  fake
    .handle('losetup', (argv) => disk.losetup(argv))
    .handle('blockdev', (argv) => disk.blockdev(argv))
    .handle('dmsetup', (argv, options) => disk.dmsetup(argv, options))
    .handle('e2fsck', (argv) => disk.e2fsck(argv))
    .handle('resize2fs', (argv) => disk.resize2fs(argv))
    .handle('debugfs', (argv) => disk.debugfs(argv))
    .handle('truncate', (argv) => disk.truncate(argv))
    .handle('cp', (argv) => disk.cp(argv));
  return disk;
}
