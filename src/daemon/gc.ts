// host.gc: a pure plan (host inventory + VM records + journal -> what no VM owns) apart from the
// apply that removes it.
import { existsSync, readdirSync, realpathSync, rmSync } from 'node:fs';
import { basename, dirname, isAbsolute, join, resolve, sep } from 'node:path';
import { FailedPreconditionError, errorMessage, wrapError } from '../core/errors.js';
import type { Paths } from '../core/paths.js';
import type { VmState } from '../core/models.js';
import type { Journal, ResourceKind, ResourceRecord, Runner } from '../core/ports.js';
import { TAP_NAME_PATTERN, RULE_COMMENT_PREFIX, type TaggedRule } from '../core/net.js';
import type { StoredVm } from '../store/store.js';
import { isDmGoneError, listDm, removeDm } from '../host/dm.js';
import { detachLoop, listLoops, type LoopDevice } from '../host/loop.js';
import { deleteTap, listBangerTaps } from '../host/tap.js';
import { listBangerRules, removeRuleSpec } from '../host/nat.js';
import { findFirecrackerProcesses, type FirecrackerProcess } from '../firecracker/proc.js';
import { killFirecracker } from '../firecracker/launcher.js';
import type { DaemonDeps } from './daemon.js';
import type { KeyedLock } from './locks.js';
import type { VmRuntime } from './vm-runtime.js';
import { SUDOERS_INSTALL_FIX, SUDO_REFUSED, isNotInstalledError } from './doctor.js';

// ---------------------------------------------------------------------------------------------
// gc: the plan

/** States in which a VM holds (or is about to hold) host objects that gc must leave alone. */
const ACTIVE_STATES: ReadonlySet<VmState> = new Set<VmState>(['creating', 'starting', 'running', 'stopping']);

export type GcVm = Pick<StoredVm, 'id' | 'state' | 'tap' | 'pid'>;

/** banger's objects as found on the host. */
export interface HostInventory {
  loops: Pick<LoopDevice, 'name' | 'backingFile' | 'isBackingFileDeleted'>[];
  /** Every device-mapper name (`dmsetup ls`). */
  mappers: string[];
  /** Interfaces named bg<hex>. */
  taps: string[];
  /** iptables rules tagged banger:<id>. */
  rules: TaggedRule[];
  /** Paths of the *.sock files in the API socket directory. */
  sockets: string[];
  processes: FirecrackerProcess[];
  /** Journaled files that exist. */
  files: string[];
}

/** Where banger's files are; each with its real path too, since the kernel prints resolved paths. */
export interface GcScope {
  vmsDirs: string[];
  imagesDirs: string[];
  socketsDirs: string[];
}

export type OrphanKind = 'process' | 'dm' | 'loop' | 'nat' | 'tap' | 'socket' | 'file' | 'journal';

/** A host object (or journal row) that no VM owns. */
export interface Orphan {
  kind: OrphanKind;
  handle: string;
  detail?: string;
  /** The VM id it is named after, when its name says. */
  vmId: string | null;
  process?: { pid: number; startTime: string };
  /** [table, chain, ...args] of a rule. */
  rule?: string[];
  /** The row a journal orphan forgets. */
  record?: ResourceRecord;
  /** Rows of VMs that are not active, forgotten once this object is gone. */
  settles: ResourceRecord[];
}

const MAPPER_NAME = /^banger-([0-9a-f]+)(-origin)?$/;
const SOCKET_NAME = /^([0-9a-f]+)\.sock$/;
const KIND_ORDER: OrphanKind[] = ['process', 'dm', 'loop', 'nat', 'tap', 'socket', 'file', 'journal'];

const rowKey = (kind: ResourceKind, handle: string) => `${kind}\0${handle}`;
const sameRow = (a: ResourceRecord, b: ResourceRecord) => a.vmId === b.vmId && a.kind === b.kind && a.handle === b.handle;

function within(file: string, dirs: string[]): string | null {
  for (const d of dirs) if (file.startsWith(d.endsWith(sep) ? d : d + sep)) return file.slice(d.length).replace(/^\/+/, '');
  return null;
}

/** `-t nat -A POSTROUTING -s 172.16.0.2/32 ... -j MASQUERADE`, as the user would type it. */
export function ruleText(spec: string[]): string {
  const [table, chain, ...args] = spec;
  return ['-t', table, '-A', chain, ...args].join(' ');
}

/**
 * What no VM owns. A VM owns what it holds while it is creating, starting, running or stopping:
 * what its journal rows name, and what is named after its id. Everything else with banger's names
 * is an orphan: loops on files under vms/ or images/, banger-<id> mapper devices, bg<id> TAPs,
 * rules tagged banger:<id>, <id>.sock API sockets, Firecracker processes of this installation.
 * Journal rows of VMs that no longer exist are orphans too, forgotten after their handles go.
 */
export function planGc(inv: HostInventory, vms: GcVm[], journal: ResourceRecord[], scope: GcScope): Orphan[] {
  const vmById = new Map(vms.map((v) => [v.id, v]));
  const isActive = (id: string | null) => id !== null && ACTIVE_STATES.has(vmById.get(id)?.state as VmState);
  const owned = new Set(journal.filter((r) => isActive(r.vmId)).map((r) => rowKey(r.kind, r.handle)));
  const loose = journal.filter((r) => !isActive(r.vmId));
  const settling = (kind: ResourceKind, handle: string) => loose.filter((r) => r.kind === kind && r.handle === handle);
  const activeTaps = new Set(vms.filter((v) => isActive(v.id)).map((v) => v.tap));
  // A start attaches the image's loop a moment before it journals it.
  const isAnyStarting = vms.some((v) => v.state === 'starting');
  const knownIds = new Set([...vmById.keys(), ...journal.map((r) => r.vmId)]);
  const out: Orphan[] = [];

  for (const p of inv.processes) {
    // Only this installation's: its API socket is ours, or its id is one we know.
    const isOurs = knownIds.has(p.vmId) || scope.socketsDirs.includes(dirname(resolve(p.apiSock)));
    if (!isOurs) continue;
    const vm = vmById.get(p.vmId);
    if (vm && isActive(vm.id)) {
      // A second Firecracker for a running VM (not its recorded pid) is a stray.
      const isStray = vm.state === 'running' && vm.pid !== null && vm.pid !== p.pid && !owned.has(rowKey('process', `${p.pid}:${p.startTime}`));
      if (!isStray) continue;
    }
    out.push({
      kind: 'process',
      handle: String(p.pid),
      detail: `firecracker --id ${p.vmId} --api-sock ${p.apiSock}`,
      vmId: p.vmId,
      process: { pid: p.pid, startTime: p.startTime },
      settles: loose.filter((r) => r.kind === 'process' && r.vmId === p.vmId && r.handle.startsWith(`${p.pid}:`)),
    });
  }

  const mappers: Orphan[] = [];
  for (const name of inv.mappers) {
    const m = MAPPER_NAME.exec(name);
    if (!m || isActive(m[1]) || owned.has(rowKey('dm', name))) continue;
    mappers.push({ kind: 'dm', handle: name, vmId: m[1], settles: settling('dm', name) });
  }
  // A snapshot holds its origin open: snapshots go first.
  mappers.sort((a, b) => Number(a.handle.endsWith('-origin')) - Number(b.handle.endsWith('-origin')));
  out.push(...mappers);

  for (const l of inv.loops) {
    const file = resolve(l.backingFile);
    const underVms = within(file, scope.vmsDirs);
    const underImages = within(file, scope.imagesDirs);
    if (underVms === null && underImages === null) continue;
    if (owned.has(rowKey('loop', l.name))) continue;
    const vmId = underVms !== null && underVms.includes('/') ? underVms.split('/')[0] : null;
    if (vmId !== null && isActive(vmId)) continue;
    if (underVms === null && isAnyStarting) continue;
    out.push({
      kind: 'loop',
      handle: l.name,
      detail: `${l.backingFile}${l.isBackingFileDeleted ? ' (deleted)' : ''}`,
      vmId,
      settles: settling('loop', l.name),
    });
  }

  for (const r of inv.rules) {
    if (isActive(r.vmId)) continue;
    out.push({
      kind: 'nat',
      handle: ruleText(r.spec),
      detail: `${RULE_COMMENT_PREFIX}${r.vmId}`,
      vmId: r.vmId,
      rule: r.spec,
      settles: loose.filter((x) => x.kind === 'nat' && x.vmId === r.vmId),
    });
  }

  for (const tap of inv.taps) {
    if (!TAP_NAME_PATTERN.test(tap)) continue;
    const vmId = tap.slice(2);
    if (isActive(vmId) || activeTaps.has(tap) || owned.has(rowKey('tap', tap))) continue;
    out.push({ kind: 'tap', handle: tap, vmId, settles: settling('tap', tap) });
  }

  for (const sock of inv.sockets) {
    const m = SOCKET_NAME.exec(basename(sock));
    if (!m || isActive(m[1]) || owned.has(rowKey('socket', sock))) continue;
    out.push({ kind: 'socket', handle: sock, vmId: m[1], settles: settling('socket', sock) });
  }

  // Rows of VMs that no longer exist: their files under vms/ go, then every row is forgotten.
  const existingFiles = new Set(inv.files);
  for (const r of journal) {
    if (vmById.has(r.vmId)) continue;
    if (r.kind === 'file' && existingFiles.has(r.handle) && within(resolve(r.handle), scope.vmsDirs) !== null) {
      const seen = out.find((o) => o.kind === 'file' && o.handle === r.handle);
      if (seen) seen.settles.push(r);
      else out.push({ kind: 'file', handle: r.handle, vmId: r.vmId, settles: [r] });
    }
    out.push({ kind: 'journal', handle: `${r.vmId} ${r.kind} ${r.handle}`, detail: 'a journal row of a VM that no longer exists', vmId: r.vmId, record: r, settles: [] });
  }

  return out.map((o, i) => ({ o, i })).sort((a, b) => KIND_ORDER.indexOf(a.o.kind) - KIND_ORDER.indexOf(b.o.kind) || a.i - b.i).map((x) => x.o);
}

// ---------------------------------------------------------------------------------------------
// gc: inventory and apply

export interface GcItem {
  kind: OrphanKind;
  handle: string;
  detail?: string;
  removed: boolean;
  error?: string;
}

export interface GcReport {
  dryRun: boolean;
  items: GcItem[];
}

export interface GcContext {
  runner: Runner;
  journal: Journal;
  listVms: () => GcVm[];
  paths: Pick<Paths, 'vmsDir' | 'imagesDir' | 'vmSocketsDir'>;
  /** Kill and remove through sudo (the daemon is not root). */
  useSudo: boolean;
  /** Firecracker processes; /proc by default. */
  listProcesses?: () => FirecrackerProcess[];
}

function withRealPaths(dir: string): string[] {
  const abs = resolve(dir);
  try {
    const real = realpathSync(abs);
    return real === abs ? [abs] : [abs, real];
  } catch {
    return [abs];
  }
}

export function gcScope(paths: GcContext['paths']): GcScope {
  return { vmsDirs: withRealPaths(paths.vmsDir), imagesDirs: withRealPaths(paths.imagesDir), socketsDirs: withRealPaths(paths.vmSocketsDir) };
}

/** A listing step that treats "the tool is not installed" as "there is nothing of that kind". */
async function listing<T>(what: string, run: () => Promise<T[]>, isNone: (err: unknown) => boolean = () => false): Promise<T[]> {
  try {
    return await run();
  } catch (err) {
    if (isNotInstalledError(err) || isNone(err)) return [];
    if (SUDO_REFUSED.test(errorMessage(err))) {
      throw new FailedPreconditionError(`gc: listing ${what}: ${errorMessage(err)}; ${SUDOERS_INSTALL_FIX} (see banger doctor)`, { cause: err });
    }
    throw wrapError(`gc: listing ${what}`, err);
  }
}

export async function takeInventory(ctx: GcContext): Promise<HostInventory> {
  const { runner } = ctx;
  const [loops, mappers, taps, rules] = await Promise.all([
    listing('loop devices', () => listLoops(runner)),
    // Without a device-mapper driver there are no mapper devices.
    listing('mapper devices', async () => (await listDm(runner)).map((d) => d.name), isDmGoneError),
    listing('TAP devices', () => listBangerTaps(runner)),
    listing('iptables rules', () => listBangerRules(runner)),
  ]);
  let sockets: string[] = [];
  try {
    sockets = readdirSync(ctx.paths.vmSocketsDir)
      .filter((n) => n.endsWith('.sock'))
      .map((n) => join(ctx.paths.vmSocketsDir, n));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  const files = ctx.journal
    .listAll()
    .filter((r) => r.kind === 'file' && isAbsolute(r.handle) && existsSync(r.handle))
    .map((r) => r.handle);
  const processes = (ctx.listProcesses ?? (() => findFirecrackerProcesses()))();
  return { loops, mappers, taps, rules, sockets, processes, files };
}

/** Removes a file that may belong to root (made by Firecracker under sudo); gone already is fine. */
async function removeFile(ctx: GcContext, path: string): Promise<void> {
  try {
    rmSync(path, { force: true });
  } catch (err) {
    if (!ctx.useSudo) throw err;
    await ctx.runner.run(['rm', '-f', '--', path]);
  }
}

async function removeOrphan(ctx: GcContext, o: Orphan): Promise<void> {
  switch (o.kind) {
    case 'process':
      await killFirecracker({ runner: ctx.runner, pid: o.process!.pid, startTime: o.process!.startTime, vmId: o.vmId!, useSudo: ctx.useSudo });
      return;
    case 'dm':
      await removeDm(ctx.runner, o.handle);
      return;
    case 'loop':
      await detachLoop(ctx.runner, o.handle);
      return;
    case 'nat':
      await removeRuleSpec(ctx.runner, o.rule!);
      return;
    case 'tap':
      await deleteTap(ctx.runner, o.handle);
      return;
    case 'socket':
    case 'file':
      await removeFile(ctx, o.handle);
      return;
    case 'journal':
      ctx.journal.forget(o.record!.vmId, o.record!.kind, o.record!.handle);
      return;
  }
}

/**
 * Removes the orphans in plan order (processes first: they hold the rest), every one even when
 * one fails. Journal rows are forgotten only once every object that settles them is gone.
 */
export async function applyGc(ctx: GcContext, orphans: Orphan[], dryRun: boolean): Promise<GcItem[]> {
  const item = (o: Orphan): GcItem => ({ kind: o.kind, handle: o.handle, ...(o.detail ? { detail: o.detail } : {}), removed: false });
  if (dryRun) return orphans.map(item);
  const failed: Orphan[] = [];
  const items: GcItem[] = [];
  const blockerOf = (r: ResourceRecord) => failed.find((f) => f.settles.some((s) => sameRow(s, r)));
  for (const o of orphans) {
    const it = item(o);
    items.push(it);
    if (o.kind === 'journal') {
      const blocker = blockerOf(o.record!);
      if (blocker) {
        it.error = `kept until ${blocker.kind} ${blocker.handle} is removed`;
        continue;
      }
    }
    try {
      await removeOrphan(ctx, o);
      it.removed = true;
    } catch (err) {
      failed.push(o);
      it.error = errorMessage(err);
    }
  }
  // Rows of existing VMs that are not active: their handles are gone now.
  for (const o of orphans) {
    if (failed.includes(o)) continue;
    for (const r of o.settles) if (!blockerOf(r)) ctx.journal.forget(r.vmId, r.kind, r.handle);
  }
  return items;
}

/** Inventory, plan, apply. The VM list and journal are read after the inventory, so that a VM that started meanwhile owns what it made. */
export async function collectGarbage(ctx: GcContext, dryRun: boolean): Promise<GcReport> {
  const inventory = await takeInventory(ctx);
  const orphans = planGc(inventory, ctx.listVms(), ctx.journal.listAll(), gcScope(ctx.paths));
  return { dryRun, items: await applyGc(ctx, orphans, dryRun) };
}

/** Runs fn holding the lock of every VM, so that no operation is half-way while gc decides. */
async function withVmLocks<T>(locks: KeyedLock | undefined, ids: string[], fn: () => Promise<T>): Promise<T> {
  if (!locks || ids.length === 0) return fn();
  const [first, ...rest] = ids;
  return locks.run(first, () => withVmLocks(locks, rest, fn));
}

export async function gc(deps: DaemonDeps, runtime: VmRuntime, dryRun: boolean): Promise<GcReport> {
  const ids = deps.store
    .listVms()
    .map((v) => v.id)
    .sort();
  const report = await withVmLocks(deps.locks, ids, () =>
    collectGarbage(
      {
        runner: deps.runner,
        journal: deps.store,
        listVms: () => deps.store.listVms(),
        paths: deps.paths,
        useSudo: runtime.options.useSudo,
      },
      dryRun,
    ),
  );
  for (const it of report.items) {
    if (it.error) deps.log.warn({ gc: it }, `gc could not remove ${it.kind} ${it.handle}`);
    else if (!dryRun) deps.log.info({ gc: it }, `gc removed ${it.kind} ${it.handle}`);
  }
  return report;
}
