// Root disks against the stateful fake disk tools: the dm snapshot strategy (exact argv and tables,
// rollback from every step, teardown), the copy strategy, the strategy choice, and the pure
// builders and parsers of loop.ts, dm.ts and blockdev.ts.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync, openSync, writeSync, closeSync, truncateSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { BangerError, FailedPreconditionError, HostCommandError, InvalidArgumentError } from '../../src/core/errors.js';
import { MemoryJournal } from '../../src/core/memory-journal.js';
import type { Clock, Journal, ResourceKind } from '../../src/core/ports.js';
import { getSectors, parseSectors } from '../../src/host/blockdev.js';
import { prepareCopyDisk, removeCopyDisk } from '../../src/host/copy.js';
import {
  cowBytesFor,
  createDm,
  dmInfo,
  hasSnapshotTarget,
  listDm,
  paddedOriginTable,
  parseDmInfo,
  parseDmList,
  parseDmTargets,
  removeDm,
  snapshotTable,
} from '../../src/host/dm.js';
import {
  attachLoop,
  attachLoopArgv,
  detachLoop,
  findLoopsByBackingFile,
  listLoops,
  parseAssociatedLoops,
  parseLoopList,
} from '../../src/host/loop.js';
import { selectStrategy } from '../../src/host/rootdisk.js';
import { setupSnapshot, teardownSnapshot, type SnapshotContext } from '../../src/host/snapshot.js';
import { installFakeDisk, type FakeDisk, type FakeDiskOptions } from '../fakes/fake-disk.js';
import { FakeRunner, fail, ok } from '../fakes/fake-runner.js';

const VM = '0123456789ab';
const OTHER_VM = 'ba9876543210';
const MiB = 1024 ** 2;
const IMAGE_BYTES = 64 * MiB; // 131072 sectors
const SNAP = `banger-${VM}`;
const ORIGIN = `banger-${VM}-origin`;

let dir: string;
let image: string;
let cow: string;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'banger-snapshot-test-'));
  image = join(dir, 'image', 'rootfs.ext4');
  mkdirSync(join(dir, 'image'));
  mkdirSync(join(dir, 'vm'));
  writeFileSync(image, '');
  truncateSync(image, IMAGE_BYTES);
  cow = join(dir, 'vm', 'cow.img');
});

afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

interface World {
  fake: FakeRunner;
  disk: FakeDisk;
  journal: MemoryJournal;
  slept: number[];
  ctx: SnapshotContext;
}

function makeWorld(opts: FakeDiskOptions = {}): World {
  const fake = new FakeRunner();
  const disk = installFakeDisk(fake, opts);
  const journal = new MemoryJournal();
  const slept: number[] = [];
  const clock: Clock = { now: () => new Date(0), sleep: async (ms) => void slept.push(ms) };
  return { fake, disk, journal, slept, ctx: { runner: fake, journal, clock } };
}

function expectNothingLeft(w: World, vmId = VM): void {
  expect([...w.disk.loops.keys()]).toEqual([]);
  expect([...w.disk.dms.keys()]).toEqual([]);
  expect(w.journal.list(vmId)).toEqual([]);
}

async function caught(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (err) {
    return err as Error;
  }
  throw new Error('expected a rejection');
}

const files = () => ({ imageRootfs: image, cowFile: cow });

describe('setupSnapshot', () => {
  it('puts a disk the size of the image straight over the read-only image loop', async () => {
    const w = makeWorld();
    const disk = await setupSnapshot(w.ctx, { vmId: VM, imageRootfs: image, cowFile: cow, diskSizeBytes: IMAGE_BYTES });

    expect(disk).toEqual({ devicePath: `/dev/mapper/${SNAP}`, resized: false });
    expect(w.fake.calls).toEqual([
      ['losetup', '--find', '--show', '--read-only', image],
      ['blockdev', '--getsz', '/dev/loop0'],
      ['truncate', '-s', '67375104', cow],
      ['losetup', '--find', '--show', cow],
      ['blockdev', '--getsz', '/dev/loop1'],
      ['dmsetup', 'create', SNAP],
    ]);
    expect(w.disk.dms.get(SNAP)?.table).toBe('0 131072 snapshot /dev/loop0 /dev/loop1 P 8');
    expect(w.disk.dms.get(SNAP)?.isReadOnly).toBe(false);
    expect(w.disk.loops.get('/dev/loop0')).toMatchObject({ backingFile: image, isReadOnly: true });
    expect(w.disk.loops.get('/dev/loop1')).toMatchObject({ backingFile: cow, isReadOnly: false });
    expect(w.journal.list(VM).map((r) => [r.kind, r.handle, r.detail])).toEqual([
      ['loop', '/dev/loop0', image],
      ['loop', '/dev/loop1', cow],
      ['dm', SNAP, 'snapshot'],
    ]);
    // Sparse: room for every chunk plus the exception store's metadata, no blocks written.
    expect(statSync(cow).size).toBe(67375104);
    expect(statSync(cow).blocks).toBe(0);
  });

  it('pads the origin with zeroes for a larger disk and grows the filesystem', async () => {
    const w = makeWorld();
    const disk = await setupSnapshot(w.ctx, { vmId: VM, imageRootfs: image, cowFile: cow, diskSizeBytes: 256 * MiB });

    expect(disk).toEqual({ devicePath: `/dev/mapper/${SNAP}`, resized: true });
    expect(w.fake.calls).toEqual([
      ['losetup', '--find', '--show', '--read-only', image],
      ['blockdev', '--getsz', '/dev/loop0'],
      ['truncate', '-s', String(cowBytesFor(524288)), cow],
      ['losetup', '--find', '--show', cow],
      ['blockdev', '--getsz', '/dev/loop1'],
      ['dmsetup', 'create', '--readonly', ORIGIN],
      ['dmsetup', 'create', SNAP],
      ['debugfs', '-R', 'stats -h', `/dev/mapper/${SNAP}`],
      ['e2fsck', '-fy', `/dev/mapper/${SNAP}`],
      ['resize2fs', `/dev/mapper/${SNAP}`],
    ]);
    expect(w.disk.dms.get(ORIGIN)?.table).toBe('0 131072 linear /dev/loop0 0\n131072 393216 zero');
    expect(w.disk.dms.get(ORIGIN)?.isReadOnly).toBe(true);
    expect(w.disk.dms.get(SNAP)?.table).toBe(`0 524288 snapshot /dev/mapper/${ORIGIN} /dev/loop1 P 8`);
    expect(w.disk.filesystems.get(cow)).toBe(256 * MiB);
    expect(w.journal.list(VM).map((r) => r.handle)).toEqual(['/dev/loop0', '/dev/loop1', ORIGIN, SNAP]);
  });

  it('keeps the COW file across stop and start and grows the filesystem only the first time', async () => {
    const w = makeWorld();
    const req = { vmId: VM, imageRootfs: image, cowFile: cow, diskSizeBytes: 256 * MiB };
    await setupSnapshot(w.ctx, req);
    // Stand-in for data the guest wrote.
    const fd = openSync(cow, 'r+');
    writeSync(fd, 'guest data', 4096);
    closeSync(fd);
    await teardownSnapshot(w.ctx, VM, files());
    expectNothingLeft(w);

    w.fake.calls.length = 0;
    const again = await setupSnapshot(w.ctx, req);
    expect(again.resized).toBe(false);
    expect(w.fake.callsMatching('truncate')).toEqual([]);
    expect(w.fake.callsMatching('e2fsck')).toEqual([]);
    expect(w.fake.callsMatching('resize2fs')).toEqual([]);
    expect(readFileSync(cow).subarray(4096, 4106).toString()).toBe('guest data');
    expect(w.disk.dms.get(SNAP)?.table).toBe(`0 524288 snapshot /dev/mapper/${ORIGIN} /dev/loop1 P 8`);
  });

  it('grows the filesystem on a later start when the first start died before resizing', async () => {
    const w = makeWorld();
    const req = { vmId: VM, imageRootfs: image, cowFile: cow, diskSizeBytes: 256 * MiB };
    w.fake.inject({ prefix: 'resize2fs', stderr: 'resize2fs: killed' });
    await expect(setupSnapshot(w.ctx, req)).rejects.toThrow(/snapshot.resize/);
    expectNothingLeft(w);
    const disk = await setupSnapshot(w.ctx, req);
    expect(disk.resized).toBe(true);
    expect(w.disk.filesystems.get(cow)).toBe(256 * MiB);
  });

  it('grows a smaller existing COW file in place, keeping its contents', async () => {
    const w = makeWorld();
    writeFileSync(cow, 'existing snapshot header');
    await setupSnapshot(w.ctx, { vmId: VM, imageRootfs: image, cowFile: cow, diskSizeBytes: IMAGE_BYTES });
    expect(statSync(cow).size).toBe(67375104);
    expect(readFileSync(cow).subarray(0, 24).toString()).toBe('existing snapshot header');
  });

  it('refuses a disk smaller than the image and leaves nothing behind', async () => {
    const w = makeWorld();
    const err = await caught(setupSnapshot(w.ctx, { vmId: VM, imageRootfs: image, cowFile: cow, diskSizeBytes: 32 * MiB }));
    expect(err.message).toMatch(/^snapshot.base-size: disk size 33554432 bytes is smaller than the image's rootfs \(67108864 bytes\)/);
    expect((err as BangerError).code).toBe('invalid_argument');
    expectNothingLeft(w);
    expect(() => statSync(cow)).toThrow();
  });

  it('refuses to set up again while the VM still holds recorded devices', async () => {
    const w = makeWorld();
    w.journal.record(VM, 'dm', SNAP, 'snapshot');
    await expect(setupSnapshot(w.ctx, { vmId: VM, imageRootfs: image, cowFile: cow, diskSizeBytes: IMAGE_BYTES })).rejects.toBeInstanceOf(
      FailedPreconditionError,
    );
    expect(w.fake.calls).toEqual([]);
  });

  it('refuses a malformed vm id before touching the host', async () => {
    const w = makeWorld();
    await expect(setupSnapshot(w.ctx, { vmId: '../etc', imageRootfs: image, cowFile: cow, diskSizeBytes: IMAGE_BYTES })).rejects.toBeInstanceOf(
      InvalidArgumentError,
    );
    expect(w.fake.calls).toEqual([]);
  });

  const faults: { what: string; prefix: () => string; step: string; diskSizeBytes: number }[] = [
    { what: 'base losetup', prefix: () => 'losetup --find --show --read-only', step: 'snapshot.base-loop', diskSizeBytes: IMAGE_BYTES },
    { what: 'base blockdev', prefix: () => 'blockdev --getsz /dev/loop0', step: 'snapshot.base-size', diskSizeBytes: IMAGE_BYTES },
    { what: 'COW truncate', prefix: () => 'truncate', step: 'snapshot.cow-file', diskSizeBytes: IMAGE_BYTES },
    { what: 'COW losetup', prefix: () => `losetup --find --show ${cow}`, step: 'snapshot.cow-loop', diskSizeBytes: IMAGE_BYTES },
    { what: 'COW blockdev', prefix: () => 'blockdev --getsz /dev/loop1', step: 'snapshot.cow-size', diskSizeBytes: IMAGE_BYTES },
    { what: 'plain dmsetup create', prefix: () => `dmsetup create ${SNAP}`, step: 'snapshot.dm', diskSizeBytes: IMAGE_BYTES },
    { what: 'padded origin dmsetup create', prefix: () => 'dmsetup create --readonly', step: 'snapshot.origin', diskSizeBytes: 256 * MiB },
    { what: 'dmsetup create over a padded origin', prefix: () => `dmsetup create ${SNAP}`, step: 'snapshot.dm', diskSizeBytes: 256 * MiB },
    { what: 'debugfs', prefix: () => 'debugfs', step: 'snapshot.fs-size', diskSizeBytes: 256 * MiB },
    { what: 'e2fsck', prefix: () => 'e2fsck', step: 'snapshot.fsck', diskSizeBytes: 256 * MiB },
    { what: 'resize2fs', prefix: () => 'resize2fs', step: 'snapshot.resize', diskSizeBytes: 256 * MiB },
  ];

  it.each(faults)('a failing $what rolls everything back and reports the original error from $step', async (f) => {
    const w = makeWorld();
    const stderr = `injected: ${f.what} failed`;
    w.fake.inject({ prefix: f.prefix(), exitCode: 8, stderr });
    const err = await caught(setupSnapshot(w.ctx, { vmId: VM, imageRootfs: image, cowFile: cow, diskSizeBytes: f.diskSizeBytes }));

    expect(err).not.toBeInstanceOf(AggregateError);
    expect(err.message.startsWith(`${f.step}: `)).toBe(true);
    expect(err.message).toContain(stderr);
    const cause = (err as Error & { cause?: unknown }).cause;
    expect(cause).toBeInstanceOf(HostCommandError);
    expect((cause as HostCommandError).exitCode).toBe(8);
    expectNothingLeft(w);
    // The injected call really happened (the fault was reached, not skipped).
    expect(w.fake.callsMatching(f.prefix()).length).toBeGreaterThan(0);
  });

  it('detaches a loop the kernel attached even though losetup reported a failure', async () => {
    const w = makeWorld();
    // losetup attached the COW loop, then died before printing it: nothing could record it.
    w.fake.handle('losetup', (argv) => {
      const res = w.disk.losetup(argv);
      return argv.includes(cow) && argv.includes('--find') ? fail(1, 'losetup: killed') : res;
    });
    const err = await caught(setupSnapshot(w.ctx, { vmId: VM, imageRootfs: image, cowFile: cow, diskSizeBytes: IMAGE_BYTES }));
    expect(err.message).toMatch(/^snapshot.cow-loop: .*losetup: killed/);
    expectNothingLeft(w);
  });

  it('detaches a loop whose journal record could not be written', async () => {
    const w = makeWorld();
    const journal: Journal = {
      record: (vmId: string, kind: ResourceKind, handle: string, detail?: string) => {
        if (detail === cow) throw new Error('database is locked');
        w.journal.record(vmId, kind, handle, detail);
      },
      forget: (...a) => w.journal.forget(...a),
      list: (vmId) => w.journal.list(vmId),
      listAll: () => w.journal.listAll(),
    };
    const err = await caught(setupSnapshot({ ...w.ctx, journal }, { vmId: VM, imageRootfs: image, cowFile: cow, diskSizeBytes: IMAGE_BYTES }));
    expect(err.message).toBe('snapshot.cow-loop: database is locked');
    expectNothingLeft(w);
  });

  it('fails at snapshot.dm on a host without device-mapper and still cleans up', async () => {
    const w = makeWorld({ hasDeviceMapper: false });
    const err = await caught(setupSnapshot(w.ctx, { vmId: VM, imageRootfs: image, cowFile: cow, diskSizeBytes: IMAGE_BYTES }));
    expect(err.message).toMatch(/^snapshot.dm: dmsetup create .*\/dev\/mapper\/control: open failed/);
    expectNothingLeft(w);
  });

  it('reports the original error and the rollback failure together when both fail', async () => {
    const w = makeWorld();
    w.fake.inject({ prefix: `dmsetup create ${SNAP}`, stderr: 'device-mapper: reload ioctl on x  failed: Invalid argument' });
    w.fake.inject({ prefix: 'losetup -d /dev/loop0', stderr: 'losetup: /dev/loop0: detach failed: Input/output error' });
    const err = await caught(setupSnapshot(w.ctx, { vmId: VM, imageRootfs: image, cowFile: cow, diskSizeBytes: IMAGE_BYTES }));

    expect(err).toBeInstanceOf(AggregateError);
    const errors = (err as AggregateError).errors as Error[];
    expect(errors[0].message).toMatch(/^snapshot.dm: .*Invalid argument/);
    expect(errors[1].message).toMatch(/snapshot.base-loop \/dev\/loop0: .*Input\/output error/);
    expect(err.message).toMatch(/Invalid argument.*; and .*Input\/output error/);
    // What could not be removed is still on record, so a later teardown finds it.
    expect(w.journal.list(VM).map((r) => r.handle)).toEqual(['/dev/loop0']);
    expect([...w.disk.loops.keys()]).toEqual(['/dev/loop0']);
    await teardownSnapshot(w.ctx, VM, files());
    expectNothingLeft(w);
  });

  it('does not take another VM base loop on the same image for a leak while that VM is attaching it', async () => {
    const w = makeWorld();
    await setupSnapshot(w.ctx, { vmId: VM, imageRootfs: image, cowFile: cow, diskSizeBytes: IMAGE_BYTES });
    // The other VM's read-only attach returns slowly: its loop exists before it can be recorded.
    w.fake.handle('losetup', async (argv) => {
      const res = w.disk.losetup(argv);
      if (argv.includes('--read-only')) await new Promise((r) => setTimeout(r, 30));
      return res;
    });
    const otherCow = join(dir, 'vm', 'other.cow');
    const other = setupSnapshot(w.ctx, { vmId: OTHER_VM, imageRootfs: image, cowFile: otherCow, diskSizeBytes: IMAGE_BYTES });
    await new Promise((r) => setTimeout(r, 5));
    await teardownSnapshot(w.ctx, VM, files());
    await other;
    expect(w.journal.list(VM)).toEqual([]);
    const otherLoops = w.journal.list(OTHER_VM).filter((r) => r.kind === 'loop');
    expect(otherLoops).toHaveLength(2);
    for (const r of otherLoops) expect(w.disk.loops.has(r.handle)).toBe(true);
    expect(w.disk.dms.has(`banger-${OTHER_VM}`)).toBe(true);
  });
});

describe('teardownSnapshot', () => {
  async function setUp(w: World, diskSizeBytes = 256 * MiB): Promise<void> {
    await setupSnapshot(w.ctx, { vmId: VM, imageRootfs: image, cowFile: cow, diskSizeBytes });
    w.fake.calls.length = 0;
  }

  it('removes the snapshot, then its origin, then the COW and base loops', async () => {
    const w = makeWorld();
    await setUp(w);
    await teardownSnapshot(w.ctx, VM, files());
    expectNothingLeft(w);
    const mutations = w.fake.calls.filter((c) => c[1] === 'remove' || c[1] === '-d').map((c) => c.join(' '));
    expect(mutations).toEqual([`dmsetup remove ${SNAP}`, `dmsetup remove ${ORIGIN}`, 'losetup -d /dev/loop1', 'losetup -d /dev/loop0']);
  });

  it('is idempotent: a second teardown changes nothing and succeeds', async () => {
    const w = makeWorld();
    await setUp(w);
    await teardownSnapshot(w.ctx, VM, files());
    w.fake.calls.length = 0;
    await teardownSnapshot(w.ctx, VM, files());
    expectNothingLeft(w);
    expect(w.fake.calls.filter((c) => c[1] === 'remove' || c[1] === '-d')).toEqual([]);
  });

  it('treats devices that vanished behind its back as removed and forgets them', async () => {
    const w = makeWorld();
    await setUp(w);
    w.disk.dms.clear();
    w.disk.loops.clear();
    await teardownSnapshot(w.ctx, VM, files());
    expectNothingLeft(w);
  });

  it('runs every step when one fails, reports that one, and can finish later', async () => {
    const w = makeWorld();
    await setUp(w);
    w.fake.inject({ prefix: 'losetup -d /dev/loop1', stderr: 'losetup: /dev/loop1: detach failed: Input/output error' });
    const err = await caught(teardownSnapshot(w.ctx, VM, files()));

    expect(err).toBeInstanceOf(AggregateError);
    expect((err as AggregateError).errors).toHaveLength(1);
    expect(err.message).toMatch(/snapshot.cow-loop \/dev\/loop1: .*Input\/output error/);
    // Everything after the failed step still ran.
    expect([...w.disk.dms.keys()]).toEqual([]);
    expect([...w.disk.loops.keys()]).toEqual(['/dev/loop1']);
    expect(w.journal.list(VM).map((r) => r.handle)).toEqual(['/dev/loop1']);

    await teardownSnapshot(w.ctx, VM, files());
    expectNothingLeft(w);
  });

  it('finds loops on the VM files that were never recorded', async () => {
    const w = makeWorld();
    writeFileSync(cow, '');
    truncateSync(cow, 8 * MiB);
    await attachLoop(w.fake, image, { readOnly: true });
    await attachLoop(w.fake, cow);
    await attachLoop(w.fake, cow);
    expect(w.disk.loops.size).toBe(3);

    await teardownSnapshot(w.ctx, VM, files());
    expectNothingLeft(w);
  });

  it('leaves alone loops on the image that another VM recorded, and writable ones banger never makes', async () => {
    const w = makeWorld();
    const otherCow = join(dir, 'vm', 'other.cow');
    await setupSnapshot(w.ctx, { vmId: OTHER_VM, imageRootfs: image, cowFile: otherCow, diskSizeBytes: IMAGE_BYTES });
    const someonesLoop = await attachLoop(w.fake, image);
    await setUp(w, IMAGE_BYTES);

    await teardownSnapshot(w.ctx, VM, files());
    expect(w.journal.list(VM)).toEqual([]);
    expect(w.disk.loops.has(someonesLoop)).toBe(true);
    for (const r of w.journal.list(OTHER_VM)) {
      if (r.kind === 'loop') expect(w.disk.loops.has(r.handle)).toBe(true);
      if (r.kind === 'dm') expect(w.disk.dms.has(r.handle)).toBe(true);
    }
  });

  it('does not detach a recorded loop number that now serves another file', async () => {
    const w = makeWorld();
    const elsewhere = join(dir, 'elsewhere.img');
    writeFileSync(elsewhere, 'x');
    // After a reboot /dev/loop0 was handed to someone else.
    w.journal.record(VM, 'loop', '/dev/loop0', cow);
    await attachLoop(w.fake, elsewhere);
    await teardownSnapshot(w.ctx, VM, files());
    expect(w.journal.list(VM)).toEqual([]);
    expect(w.disk.loops.get('/dev/loop0')?.backingFile).toBe(elsewhere);
  });

  it('detaches a recorded loop whose backing file was deleted', async () => {
    const w = makeWorld();
    await setUp(w, IMAGE_BYTES);
    await removeDm(w.fake, SNAP);
    w.journal.forget(VM, 'dm', SNAP);
    rmSync(cow);
    await teardownSnapshot(w.ctx, VM, files());
    expectNothingLeft(w);
  });

  it('removes a mapper device whose record was lost', async () => {
    const w = makeWorld();
    await setUp(w, IMAGE_BYTES);
    w.journal.forget(VM, 'dm', SNAP);
    await teardownSnapshot(w.ctx, VM, files());
    expectNothingLeft(w);
  });

  it('retries a busy mapper device until it lets go', async () => {
    const w = makeWorld();
    await setUp(w);
    w.disk.markBusy(SNAP, 3);
    await teardownSnapshot(w.ctx, VM, files());
    expectNothingLeft(w);
    expect(w.fake.calls.filter((c) => c.join(' ') === `dmsetup remove ${SNAP}`)).toHaveLength(4);
    expect(w.slept).toEqual([200, 200, 200]);
  });

  it('gives up on a device busy beyond the retries, keeps its record, and finishes on a later teardown', async () => {
    const w = makeWorld();
    await setUp(w);
    w.disk.markBusy(SNAP, 7);
    const err = await caught(teardownSnapshot(w.ctx, VM, files()));
    expect(err).toBeInstanceOf(AggregateError);
    expect(err.message).toMatch(new RegExp(`snapshot.dm ${SNAP}: .*Device or resource busy`));
    expect(err.message).not.toMatch(/Command failed/);
    expect(w.fake.calls.filter((c) => c.join(' ') === `dmsetup remove ${SNAP}`)).toHaveLength(5);
    // The origin is still held by the snapshot; the loops are marked to clear once released.
    expect([...w.disk.dms.keys()].sort()).toEqual([SNAP, ORIGIN].sort());
    expect(w.journal.list(VM).filter((r) => r.kind === 'dm').map((r) => r.handle)).toEqual([ORIGIN, SNAP]);

    await teardownSnapshot(w.ctx, VM, files());
    expectNothingLeft(w);
  });
});

describe('prepareCopyDisk', () => {
  it('copies the image sparsely and keeps its size when the disk is the same size', async () => {
    const w = makeWorld();
    const diskFile = join(dir, 'vm', 'rootfs.ext4');
    const res = await prepareCopyDisk(w.ctx, { vmId: VM, imageRootfs: image, diskFile, diskSizeBytes: IMAGE_BYTES });
    expect(res).toEqual({ diskFile, resized: false });
    expect(w.fake.calls).toEqual([['cp', '--reflink=auto', '--sparse=always', image, diskFile]]);
    expect(statSync(diskFile).size).toBe(IMAGE_BYTES);
    expect(w.journal.list(VM).map((r) => [r.kind, r.handle])).toEqual([['file', diskFile]]);
  });

  it('grows the file and then the filesystem for a larger disk', async () => {
    const w = makeWorld();
    const diskFile = join(dir, 'vm', 'rootfs.ext4');
    const res = await prepareCopyDisk(w.ctx, { vmId: VM, imageRootfs: image, diskFile, diskSizeBytes: 256 * MiB });
    expect(res.resized).toBe(true);
    expect(w.fake.calls).toEqual([
      ['cp', '--reflink=auto', '--sparse=always', image, diskFile],
      ['truncate', '-s', String(256 * MiB), diskFile],
      ['e2fsck', '-fy', diskFile],
      ['resize2fs', diskFile],
    ]);
    expect(statSync(diskFile).size).toBe(256 * MiB);
    expect(w.disk.filesystems.get(diskFile)).toBe(256 * MiB);
  });

  it.each([
    ['cp', 'copy.copy'],
    ['truncate', 'copy.grow'],
    ['e2fsck', 'copy.fsck'],
    ['resize2fs', 'copy.resize'],
  ])('removes the partial file when %s fails, reporting %s', async (tool, stepName) => {
    const w = makeWorld();
    const diskFile = join(dir, 'vm', 'rootfs.ext4');
    w.fake.inject({ prefix: tool, exitCode: 8, stderr: `injected ${tool} failure` });
    const err = await caught(prepareCopyDisk(w.ctx, { vmId: VM, imageRootfs: image, diskFile, diskSizeBytes: 256 * MiB }));
    expect(err.message).toMatch(new RegExp(`^${stepName}: .*injected ${tool} failure`));
    expect(() => statSync(diskFile)).toThrow();
    expect(w.journal.list(VM)).toEqual([]);
  });

  it('never overwrites an existing disk file', async () => {
    const w = makeWorld();
    const diskFile = join(dir, 'vm', 'rootfs.ext4');
    writeFileSync(diskFile, 'the VM data');
    await expect(prepareCopyDisk(w.ctx, { vmId: VM, imageRootfs: image, diskFile, diskSizeBytes: IMAGE_BYTES })).rejects.toBeInstanceOf(
      FailedPreconditionError,
    );
    expect(readFileSync(diskFile, 'utf8')).toBe('the VM data');
    expect(w.fake.calls).toEqual([]);
  });

  it('refuses a disk smaller than the image', async () => {
    const w = makeWorld();
    const diskFile = join(dir, 'vm', 'rootfs.ext4');
    await expect(prepareCopyDisk(w.ctx, { vmId: VM, imageRootfs: image, diskFile, diskSizeBytes: MiB })).rejects.toThrow(/smaller than the image/);
  });

  it('removeCopyDisk deletes the file and its record, and treats a missing file as removed', async () => {
    const w = makeWorld();
    const diskFile = join(dir, 'vm', 'rootfs.ext4');
    await prepareCopyDisk(w.ctx, { vmId: VM, imageRootfs: image, diskFile, diskSizeBytes: IMAGE_BYTES });
    await removeCopyDisk(w.ctx, VM, diskFile);
    await removeCopyDisk(w.ctx, VM, diskFile);
    expect(() => statSync(diskFile)).toThrow();
    expect(w.journal.list(VM)).toEqual([]);
  });
});

describe('selectStrategy', () => {
  const yes = () => true;
  const no = () => false;

  it('auto picks dm when /dev/mapper/control exists and the snapshot target is listed', async () => {
    const w = makeWorld();
    const choice = await selectStrategy(w.fake, 'auto', { hasMapperControl: yes });
    expect(choice.strategy).toBe('dm');
    expect(choice.reason).toMatch(/lists snapshot/);
  });

  it('auto falls back to copy without /dev/mapper/control, without asking dmsetup', async () => {
    const w = makeWorld();
    const choice = await selectStrategy(w.fake, 'auto', { hasMapperControl: no });
    expect(choice).toMatchObject({ strategy: 'copy' });
    expect(choice.reason).toMatch(/\/dev\/mapper\/control does not exist.*modprobe/);
    expect(w.fake.calls).toEqual([]);
  });

  it('auto falls back to copy when the snapshot target is not loaded', async () => {
    const w = makeWorld({ targets: ['linear', 'zero', 'striped'] });
    const choice = await selectStrategy(w.fake, 'auto', { hasMapperControl: yes });
    expect(choice.strategy).toBe('copy');
    expect(choice.reason).toMatch(/does not list snapshot.*modprobe dm_snapshot/);
  });

  it('auto falls back to copy when dmsetup cannot reach the driver', async () => {
    const w = makeWorld({ hasDeviceMapper: false });
    expect((await selectStrategy(w.fake, 'auto', { hasMapperControl: yes })).strategy).toBe('copy');
  });

  it('an explicit dm on a host without it is a failed precondition that names the fix', async () => {
    const w = makeWorld();
    const err = await caught(selectStrategy(w.fake, 'dm', { hasMapperControl: no }));
    expect(err).toBeInstanceOf(FailedPreconditionError);
    expect(err.message).toMatch(/modprobe dm_mod dm_snapshot/);
    expect(err.message).toMatch(/BANGER_ROOTFS_STRATEGY=copy/);
  });

  it('honours explicit dm and copy when they are possible', async () => {
    const w = makeWorld();
    expect((await selectStrategy(w.fake, 'dm', { hasMapperControl: yes })).strategy).toBe('dm');
    expect((await selectStrategy(w.fake, 'copy', { hasMapperControl: yes })).strategy).toBe('copy');
  });

  it('rejects an unknown strategy name', async () => {
    const w = makeWorld();
    await expect(selectStrategy(w.fake, 'zfs' as never)).rejects.toBeInstanceOf(InvalidArgumentError);
  });
});

describe('dm builders and parsers', () => {
  it('builds the snapshot table in 512-byte sectors', () => {
    expect(snapshotTable(2097152, '/dev/loop3', '/dev/loop4')).toBe('0 2097152 snapshot /dev/loop3 /dev/loop4 P 8');
    expect(snapshotTable(2048, '/dev/mapper/o', '/dev/loop1', 16)).toBe('0 2048 snapshot /dev/mapper/o /dev/loop1 P 16');
    expect(() => snapshotTable(0, '/dev/loop3', '/dev/loop4')).toThrow(InvalidArgumentError);
    expect(() => snapshotTable(10.5, '/dev/loop3', '/dev/loop4')).toThrow(InvalidArgumentError);
  });

  it('builds a padded origin of the image followed by zeroes', () => {
    expect(paddedOriginTable('/dev/loop3', 524288, 2097152)).toBe('0 524288 linear /dev/loop3 0\n524288 1572864 zero');
    expect(() => paddedOriginTable('/dev/loop3', 524288, 524288)).toThrow(/larger than its base/);
  });

  it('sizes the COW so that a fully rewritten disk still fits', () => {
    // 4 KiB chunks, 256 exceptions per metadata chunk, one header chunk.
    expect(cowBytesFor(8)).toBe(3 * 4096);
    expect(cowBytesFor(256 * 8)).toBe((1 + 1 + 256) * 4096);
    expect(cowBytesFor(257 * 8)).toBe((1 + 2 + 257) * 4096);
    expect(cowBytesFor(8388608)).toBe(4311748608); // a 4 GiB disk: 16 MiB + 4 KiB over
    expect(cowBytesFor(9)).toBe((1 + 1 + 2) * 4096);
  });

  it('parses dmsetup ls in both the current and the older format', () => {
    expect(parseDmList('banger-0123456789ab\t(253:0)\nbanger-0123456789ab-origin\t(253, 1)\n')).toEqual([
      { name: 'banger-0123456789ab', major: 253, minor: 0 },
      { name: 'banger-0123456789ab-origin', major: 253, minor: 1 },
    ]);
    expect(parseDmList('No devices found\n')).toEqual([]);
    expect(() => parseDmList('garbage')).toThrow();
  });

  it('parses dmsetup info', () => {
    const info = parseDmInfo(
      'Name:              banger-x-origin\nState:             ACTIVE (READ-ONLY)\nRead Ahead:        256\nTables present:    LIVE\nOpen count:        1\nEvent number:      0\nMajor, minor:      253, 4\nNumber of targets: 2\n\n',
    );
    expect(info).toEqual({ name: 'banger-x-origin', isSuspended: false, isReadOnly: true, openCount: 1, major: 253, minor: 4 });
  });

  it('parses dmsetup targets', () => {
    expect(parseDmTargets('snapshot-merge   v1.5.0\nsnapshot         v1.16.0\nzero             v1.2.0\n').map((t) => t.name)).toEqual([
      'snapshot-merge',
      'snapshot',
      'zero',
    ]);
  });

  it('creates, lists, probes and removes through dmsetup, gone counting as removed', async () => {
    const w = makeWorld();
    const loop = await attachLoop(w.fake, image, { readOnly: true });
    await expect(createDm(w.fake, 'plain', `0 131072 linear ${loop} 0`)).rejects.toThrow(/reload ioctl on plain +failed: Permission denied$/);
    await createDm(w.fake, 'plain', `0 131072 linear ${loop} 0`, { readOnly: true });
    await expect(createDm(w.fake, 'plain', `0 131072 linear ${loop} 0`, { readOnly: true })).rejects.toThrow(/Device or resource busy/);
    expect(await listDm(w.fake)).toEqual([{ name: 'plain', major: 253, minor: 0 }]);
    expect(await dmInfo(w.fake, 'plain')).toMatchObject({ name: 'plain', isReadOnly: true });
    expect(await dmInfo(w.fake, 'absent')).toBeNull();
    await removeDm(w.fake, 'plain');
    await removeDm(w.fake, 'plain');
    expect(await listDm(w.fake)).toEqual([]);
    expect(await hasSnapshotTarget(w.fake)).toBe(true);
  });
});

describe('loop builders and parsers', () => {
  it('builds losetup argv', () => {
    expect(attachLoopArgv('/img', { readOnly: true })).toEqual(['losetup', '--find', '--show', '--read-only', '/img']);
    expect(attachLoopArgv('/img')).toEqual(['losetup', '--find', '--show', '/img']);
  });

  it('parses losetup -j rows, with and without an offset', () => {
    expect(
      parseAssociatedLoops('/dev/loop0: [2049]:12 (/var/img (copy).ext4)\n/dev/loop7: [65024]:2146786 (/tmp/a.img), offset 512\n'),
    ).toEqual([
      { name: '/dev/loop0', backingFile: '/var/img (copy).ext4' },
      { name: '/dev/loop7', backingFile: '/tmp/a.img' },
    ]);
    expect(parseAssociatedLoops('')).toEqual([]);
  });

  it('parses losetup -J as util-linux prints it, including deleted files and empty output', () => {
    const sample = `{
   "loopdevices": [
      {
         "name": "/dev/loop0",
         "sizelimit": 0,
         "offset": 0,
         "autoclear": false,
         "ro": true,
         "back-file": "/tmp/lt2.img (deleted)",
         "dio": false,
         "log-sec": 512
      },{
         "name": "/dev/loop1",
         "sizelimit": "0",
         "offset": "0",
         "autoclear": "1",
         "ro": "0",
         "back-file": "/var/cow.img"
      }
   ]
}`;
    expect(parseLoopList(sample)).toEqual([
      { name: '/dev/loop0', backingFile: '/tmp/lt2.img', isBackingFileDeleted: true, isReadOnly: true, isAutoclear: false, offset: 0, sizeLimit: 0 },
      { name: '/dev/loop1', backingFile: '/var/cow.img', isBackingFileDeleted: false, isReadOnly: false, isAutoclear: true, offset: 0, sizeLimit: 0 },
    ]);
    expect(parseLoopList('')).toEqual([]);
    expect(parseLoopList('{"loopdevices": []}')).toEqual([]);
  });

  it('attaches, finds, lists and detaches through losetup, a free device counting as detached', async () => {
    const w = makeWorld();
    const dev = await attachLoop(w.fake, image, { readOnly: true });
    expect(dev).toBe('/dev/loop0');
    expect(await findLoopsByBackingFile(w.fake, image)).toEqual(['/dev/loop0']);
    expect(await getSectors(w.fake, dev)).toBe(131072);
    expect((await listLoops(w.fake)).map((l) => [l.name, l.backingFile, l.isReadOnly])).toEqual([['/dev/loop0', image, true]]);
    await detachLoop(w.fake, dev);
    await detachLoop(w.fake, dev);
    await detachLoop(w.fake, '/dev/loop999');
    expect(await findLoopsByBackingFile(w.fake, image)).toEqual([]);
    await expect(attachLoop(w.fake, join(dir, 'missing.img'))).rejects.toThrow(/No such file or directory/);
  });

  it('parses blockdev --getsz', () => {
    expect(parseSectors('2097152\n')).toBe(2097152);
    expect(() => parseSectors('blockdev: oops')).toThrow();
  });

  it('a detach that fails for another reason is reported', async () => {
    const w = makeWorld();
    w.fake.handle('losetup', () => fail(1, 'losetup: /dev/loop0: detach failed: Input/output error'));
    await expect(detachLoop(w.fake, '/dev/loop0')).rejects.toThrow(/Input\/output error/);
    w.fake.handle('losetup', () => ok('/dev/loop0: [1]:2 (/x)\n'));
    expect(await findLoopsByBackingFile(w.fake, '/x')).toEqual(['/dev/loop0']);
  });
});
