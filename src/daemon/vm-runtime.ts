// The VM lifecycle on the host. Start is a named list of steps; each step journals its handles
// the moment they exist, and one release function (used by a failed start, stop, rm, crash
// clean-up and recovery) tears down everything journaled, in reverse, every step run.
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { FailedPreconditionError, InternalError, errorMessage, wrapError } from '../core/errors.js';
import type { Image, VmNetwork } from '../core/models.js';
import { vmApiSocket, vmDir } from '../core/paths.js';
import { parsePool, subnetForIndex, firstFreeIndex, tapName, macForGuestIp } from '../core/net.js';
import { unwind, type Undo } from '../core/unwind.js';
import type { DiskStrategy, StoredVm } from '../store/store.js';
import { FirecrackerClient } from '../firecracker/api.js';
import { applyFirecrackerConfig, buildFirecrackerConfig } from '../firecracker/config.js';
import { killFirecracker, launchFirecracker, waitForExit, consoleLogPath, pidFilePath } from '../firecracker/launcher.js';
import { findFirecrackerProcesses, isSameProcess } from '../firecracker/proc.js';
import { capConsoleLog, tailLines } from '../firecracker/console.js';
import { setupSnapshot, teardownSnapshot } from '../host/snapshot.js';
import { prepareCopyDisk, removeCopyDisk } from '../host/copy.js';
import { selectStrategy } from '../host/rootdisk.js';
import { setupNetwork, teardownNetwork } from '../host/network.js';
import { waitForSshBanner } from '../host/ssh.js';
import { checkPoolAgainstRoutes } from '../host/uplink.js';
import type { RuntimeDeps as DaemonDeps } from './daemon.js';
import { Progress, vmView } from './service.js';
import type { Params } from './schemas.js';
import { buildImage } from './image-build.js';
import { doctor } from './doctor.js';
import { gc } from './gc.js';

export interface StopOptions {
  timeoutMs: number;
  force: boolean;
  /** Restart: a VM that is not running is fine. */
  ifRunning?: boolean;
}

/** The steps of a start, in order. Logs, progress events and errors name them. */
export const START_STEPS = ['disk.attach', 'net.setup', 'vmm.spawn', 'vmm.configure', 'vmm.start'] as const;
export type StartStep = (typeof START_STEPS)[number];

const WATCH_INTERVAL_MS = 250;
const CONSOLE_CAP_BYTES = 8 * 1024 * 1024;
const CONSOLE_LINES_IN_ERRORS = 10;
const WAIT_SSH_TIMEOUT_MS = 120_000;

export interface RuntimeOptions {
  /** Run Firecracker through sudo (the daemon is not root). */
  useSudo: boolean;
  uid: number;
  gid: number;
  /** Test-only: pause forever at this step boundary (the crash matrix kills the daemon there). */
  pauseAt?: string;
  apiTimeoutMs?: number;
}

export class VmRuntime {
  private watchTimer: NodeJS.Timeout | null = null;
  private ticks = 0;
  /** Exit statuses of the Firecracker processes this daemon spawned, by VM id. */
  private readonly exits = new Map<string, { code: number | null; signal: string | null }>();
  private strategyChoice: Promise<{ strategy: DiskStrategy; reason: string }> | null = null;
  readonly options: RuntimeOptions;

  constructor(
    private readonly deps: DaemonDeps,
    options?: Partial<RuntimeOptions>,
  ) {
    const uid = process.getuid?.() ?? 0;
    this.options = { useSudo: uid !== 0, uid, gid: process.getgid?.() ?? 0, pauseAt: process.env.BANGER_TEST_PAUSE_AT, ...options };
  }

  private get store() {
    return this.deps.store;
  }

  private ctx() {
    return { runner: this.deps.runner, journal: this.deps.store, clock: this.deps.clock };
  }

  /** Test hook: a named step boundary. */
  private async checkpoint(step: string, vmId: string): Promise<void> {
    if (this.options.pauseAt && this.options.pauseAt === step) {
      this.deps.log.warn({ step, vmId }, `paused at ${step} (BANGER_TEST_PAUSE_AT)`);
      await new Promise<never>(() => {});
    }
  }

  private setState(vmId: string, patch: Parameters<DaemonDeps['store']['updateStatus']>[1]): StoredVm {
    const vm = this.store.updateStatus(vmId, patch);
    this.deps.events.emit({ type: 'vm.state', at: new Date().toISOString(), vm: vmView(this.deps, vm) });
    return vm;
  }

  // --- disk strategy and network allocation

  async diskStrategy(): Promise<DiskStrategy> {
    return (await this.strategy()).strategy;
  }

  strategy(): Promise<{ strategy: DiskStrategy; reason: string }> {
    this.strategyChoice ??= selectStrategy(this.deps.runner, this.deps.settings.rootfsStrategy);
    const p = this.strategyChoice;
    p.catch(() => (this.strategyChoice = null));
    return p;
  }

  pickNetwork(vmId: string, used: number[]): VmNetwork {
    const pool = parsePool(this.deps.settings.netPool);
    const netIndex = firstFreeIndex(pool, used);
    const subnet = subnetForIndex(pool, netIndex);
    return { netIndex, hostIp: subnet.hostIp, guestIp: subnet.guestIp, tap: tapName(vmId), mac: macForGuestIp(subnet.guestIp) };
  }

  /** A pool that overlaps a route of the host (other than banger's own TAPs) is refused. */
  async checkPool(): Promise<void> {
    await checkPoolAgainstRoutes(this.deps.runner, parsePool(this.deps.settings.netPool));
  }

  private dir(vmId: string): string {
    return vmDir(this.deps.paths, vmId);
  }

  /** The copy strategy's disk, or the dm strategy's COW file. */
  diskFile(vm: Pick<StoredVm, 'id' | 'diskStrategy'>): string {
    return join(this.dir(vm.id), vm.diskStrategy === 'dm' ? 'cow.img' : 'rootfs.ext4');
  }

  private image(vm: StoredVm): Image {
    const image = this.store.getImage(vm.imageId);
    if (!image) throw new InternalError(`VM ${vm.name} refers to image ${vm.imageId}, which is gone`);
    return image;
  }

  /** At create: the copy strategy copies the rootfs now; the dm strategy makes its COW at start. */
  async prepareDisk(vmId: string, progress: Progress): Promise<void> {
    const vm = this.store.getVm(vmId)!;
    if (vm.diskStrategy !== 'copy') return;
    progress.phase('disk.copy');
    const image = this.image(vm);
    await prepareCopyDisk(this.ctx(), { vmId, imageRootfs: image.rootfsPath, diskFile: this.diskFile(vm), diskSizeBytes: vm.diskSizeBytes });
    await this.checkpoint('disk.copy', vmId);
  }

  // --- start

  async start(vmId: string, progress: Progress): Promise<void> {
    let vm = this.store.getVm(vmId)!;
    if (vm.state === 'running') return;
    if (vm.state !== 'stopped' && vm.state !== 'error') {
      throw new FailedPreconditionError(`VM "${vm.name}" is ${vm.state}; wait for it to finish`);
    }
    const image = this.image(vm);
    // Leftovers of an earlier failure are released first, so that a start begins from nothing.
    // The copy strategy's disk file is journaled for the VM's whole life: it is no leftover.
    try {
      if (this.store.list(vmId).some((r) => r.kind !== 'file')) await this.release(vm);
    } catch (err) {
      throw wrapError(`starting VM ${vm.name}: releasing what an earlier attempt left`, err);
    }
    vm = this.setState(vmId, { state: 'starting' });
    const dir = this.dir(vmId);
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    mkdirSync(this.deps.paths.vmSocketsDir, { recursive: true, mode: 0o700 });
    const apiSock = vmApiSocket(this.deps.paths, vmId);
    let step: StartStep = START_STEPS[0];
    try {
      step = 'disk.attach';
      progress.phase(step);
      let diskPath = this.diskFile(vm);
      if (vm.diskStrategy === 'dm') {
        diskPath = (await setupSnapshot(this.ctx(), { vmId, imageRootfs: image.rootfsPath, cowFile: diskPath, diskSizeBytes: vm.diskSizeBytes })).devicePath;
      } else if (!existsSync(diskPath)) {
        throw new FailedPreconditionError(`the VM's disk ${diskPath} is missing; remove the VM with banger vm rm ${vm.name}`);
      }
      await this.checkpoint(step, vmId);

      step = 'net.setup';
      progress.phase(step);
      await setupNetwork(this.ctx(), vm, { uplink: this.deps.settings.uplink ?? undefined });
      await this.checkpoint(step, vmId);

      step = 'vmm.spawn';
      progress.phase(step);
      this.exits.delete(vmId);
      this.store.record(vmId, 'socket', apiSock);
      const fc = await launchFirecracker({
        runner: this.deps.runner,
        binary: this.deps.settings.firecracker,
        apiSock,
        vmId,
        vmDir: dir,
        useSudo: this.options.useSudo,
        uid: this.options.uid,
        gid: this.options.gid,
        apiTimeoutMs: this.options.apiTimeoutMs,
      });
      this.store.record(vmId, 'process', `${fc.pid}:${fc.startTime}`);
      void fc.exited?.then((e) => this.exits.set(vmId, e));
      vm = this.store.updateStatus(vmId, { pid: fc.pid, pidStartTime: fc.startTime });
      await this.checkpoint(step, vmId);

      step = 'vmm.configure';
      progress.phase(step);
      const client = new FirecrackerClient(apiSock);
      await applyFirecrackerConfig(client, buildFirecrackerConfig(vm, image, diskPath));
      await this.checkpoint(step, vmId);

      step = 'vmm.start';
      progress.phase(step);
      await client.instanceStart();
      await this.checkpoint(step, vmId);
    } catch (err) {
      const failure = wrapError(`starting VM ${vm.name}: ${step}`, err);
      let message = failure.message;
      try {
        await this.release(this.store.getVm(vmId)!);
      } catch (releaseErr) {
        message += `; and releasing its resources failed: ${errorMessage(releaseErr)}`;
      }
      this.setState(vmId, { state: 'error', pid: null, pidStartTime: null, lastError: message });
      if (message !== failure.message) throw new InternalError(message, { cause: err });
      throw failure;
    }
    this.setState(vmId, { state: 'running', lastError: null });
    progress.phase('running');
    this.ensureWatching();
  }

  async waitSsh(vmId: string, progress: Progress, timeoutMs = WAIT_SSH_TIMEOUT_MS): Promise<void> {
    const vm = this.store.getVm(vmId)!;
    progress.phase('ssh.wait', `waiting for sshd on ${vm.guestIp}:22`);
    try {
      await waitForSshBanner(vm.guestIp, 22, { timeoutMs });
    } catch (err) {
      throw wrapError(`VM ${vm.name} is running, but its SSH server did not answer (see banger vm logs ${vm.name})`, err);
    }
    progress.phase('ssh.ready');
  }

  // --- stop

  async stop(vmId: string, opts: StopOptions, progress: Progress): Promise<void> {
    const vm = this.store.getVm(vmId)!;
    if (vm.state === 'stopped') return;
    if (vm.state === 'creating') throw new FailedPreconditionError(`VM "${vm.name}" is still being created`);
    if (vm.state === 'error') {
      // Nothing runs; make sure nothing is held either. lastError stays until the next start.
      progress.phase('release');
      await this.release(vm);
      this.setState(vmId, { state: 'stopped', pid: null, pidStartTime: null });
      return;
    }
    this.setState(vmId, { state: 'stopping' });
    await this.checkpoint('vmm.stopping', vmId);
    try {
      await this.shutdown(vm, opts, progress);
      progress.phase('release');
      await this.release(vm);
    } catch (err) {
      const failure = wrapError(`stopping VM ${vm.name}`, err);
      // The record keeps a pid only while that Firecracker still runs (the kill may have failed).
      const alive = vm.pid !== null && vm.pidStartTime !== null && isSameProcess(vm.pid, vm.pidStartTime, vm.id);
      this.setState(vmId, { state: 'error', lastError: failure.message, ...(alive ? {} : { pid: null, pidStartTime: null }) });
      throw failure;
    }
    this.setState(vmId, { state: 'stopped', pid: null, pidStartTime: null });
    progress.phase('stopped');
  }

  /** Asks the guest to shut down (Ctrl-Alt-Del), waits, then kills the real pid. */
  private async shutdown(vm: StoredVm, opts: StopOptions, progress: Progress): Promise<void> {
    const { pid, pidStartTime } = vm;
    if (pid === null || pidStartTime === null || !isSameProcess(pid, pidStartTime, vm.id)) return;
    if (!opts.force) {
      progress.phase('vmm.ctrl-alt-del');
      let asked = true;
      try {
        await new FirecrackerClient(vmApiSocket(this.deps.paths, vm.id), { timeoutMs: 2000 }).sendCtrlAltDel();
      } catch (err) {
        asked = false;
        this.deps.log.warn({ vmId: vm.id, err: errorMessage(err) }, 'SendCtrlAltDel failed; killing');
      }
      if (asked) {
        progress.phase('vmm.wait-exit', `up to ${Math.round(opts.timeoutMs / 1000)} s`);
        if (await waitForExit(pid, pidStartTime, vm.id, opts.timeoutMs)) return;
      }
    }
    progress.phase('vmm.kill');
    await killFirecracker({ runner: this.deps.runner, pid, startTime: pidStartTime, vmId: vm.id, useSudo: this.options.useSudo });
  }

  // --- release: the one teardown path

  /**
   * Releases everything the VM holds on the host: its Firecracker process (from the journal and
   * by its --id on /proc, so that a crash before the pid was journaled cannot leak one), the API
   * socket, the network and the dm disk. Every step runs; failures come back together.
   */
  async release(vm: StoredVm): Promise<void> {
    const journal = this.store;
    const image = this.store.getImage(vm.imageId);
    const undos: Undo[] = [
      {
        name: 'disk.detach',
        run: async () => {
          if (vm.diskStrategy !== 'dm' && !journal.list(vm.id).some((r) => r.kind === 'loop' || r.kind === 'dm')) return;
          await teardownSnapshot(this.ctx(), vm.id, { imageRootfs: image?.rootfsPath ?? '', cowFile: this.diskFile({ id: vm.id, diskStrategy: 'dm' }) });
        },
      },
      {
        name: 'net.teardown',
        run: async () => {
          await teardownNetwork(this.ctx(), { id: vm.id, tap: vm.tap, guestIp: vm.guestIp });
        },
      },
      {
        name: 'vmm.kill',
        run: async () => {
          const targets = new Map<number, string>();
          for (const r of journal.list(vm.id).filter((x) => x.kind === 'process')) {
            const [pid, startTime] = r.handle.split(':');
            targets.set(Number(pid), startTime);
          }
          for (const p of findFirecrackerProcesses()) if (p.vmId === vm.id) targets.set(p.pid, p.startTime);
          for (const [pid, startTime] of targets) {
            await killFirecracker({ runner: this.deps.runner, pid, startTime, vmId: vm.id, useSudo: this.options.useSudo });
          }
          for (const r of journal.list(vm.id).filter((x) => x.kind === 'process')) journal.forget(vm.id, 'process', r.handle);
          const sock = vmApiSocket(this.deps.paths, vm.id);
          await this.removePath(sock);
          await this.removePath(pidFilePath(this.dir(vm.id)));
          journal.forget(vm.id, 'socket', sock);
        },
      },
    ];
    await unwind(undos, `releasing VM ${vm.name}`);
  }

  private async removePath(path: string): Promise<void> {
    try {
      rmSync(path, { force: true });
    } catch (err) {
      if (!this.options.useSudo) throw err;
      await this.deps.runner.run(['rm', '-f', '--', path]);
    }
  }

  /** Releases everything and deletes the VM's files and record. */
  async destroy(vmId: string, progress: Progress): Promise<void> {
    const vm = this.store.getVm(vmId);
    if (!vm) return;
    try {
      if (vm.state === 'running' || vm.state === 'stopping' || vm.state === 'starting') {
        progress.phase('vmm.kill');
        await this.shutdown(vm, { force: true, timeoutMs: 0 }, progress);
      }
      progress.phase('release');
      await this.release(vm);
    } catch (err) {
      // The VM stays, in error, holding what could not be released; a later rm --force retries.
      const failure = wrapError(`removing VM ${vm.name}`, err);
      const alive = vm.pid !== null && vm.pidStartTime !== null && isSameProcess(vm.pid, vm.pidStartTime, vm.id);
      this.setState(vmId, { state: 'error', lastError: failure.message, ...(alive ? {} : { pid: null, pidStartTime: null }) });
      throw failure;
    }
    progress.phase('disk.delete');
    await removeCopyDisk(this.ctx(), vmId, this.diskFile(vm));
    rmSync(this.dir(vmId), { recursive: true, force: true });
    for (const r of this.store.list(vmId)) {
      if (r.kind === 'file') this.store.forget(vmId, 'file', r.handle);
    }
    this.store.deleteVm(vmId);
    this.exits.delete(vmId);
  }

  // --- watching running VMs

  ensureWatching(): void {
    if (this.watchTimer) return;
    this.watchTimer = setInterval(() => void this.watchTick(), WATCH_INTERVAL_MS);
    this.watchTimer.unref();
  }

  private async watchTick(): Promise<void> {
    this.ticks++;
    for (const vm of this.store.listVms()) {
      if (vm.state !== 'running' || vm.pid === null || vm.pidStartTime === null) continue;
      if (this.deps.locks.isBusy(vm.id)) continue;
      if (isSameProcess(vm.pid, vm.pidStartTime, vm.id)) {
        if (this.ticks % 20 === 0) {
          try {
            capConsoleLog(consoleLogPath(this.dir(vm.id)), CONSOLE_CAP_BYTES);
          } catch {
            // the log may not exist yet
          }
        }
        continue;
      }
      await this.deps.locks.run(vm.id, () => this.onExited(vm.id)).catch((err) => this.deps.log.error({ err, vmId: vm.id }, 'handling an exited VM'));
    }
  }

  /** Firecracker exited on its own: record why, release its resources. */
  private async onExited(vmId: string): Promise<void> {
    const vm = this.store.getVm(vmId);
    if (!vm || vm.state !== 'running' || vm.pid === null || vm.pidStartTime === null) return;
    if (isSameProcess(vm.pid, vm.pidStartTime, vm.id)) return;
    // The exit status arrives a moment after /proc shows the process gone.
    for (let i = 0; i < 10 && !this.exits.has(vmId); i++) await new Promise((r) => setTimeout(r, 20));
    const exit = this.exits.get(vmId);
    const how = exit ? (exit.signal ? `was killed by ${exit.signal}` : `exited with code ${exit.code}`) : 'exited (its status is unknown: it was started by an earlier bangerd)';
    const lines = safeTail(consoleLogPath(this.dir(vmId)), CONSOLE_LINES_IN_ERRORS);
    let message = `firecracker (pid ${vm.pid}) ${how}${lines.length ? `; console: ${lines.join(' | ')}` : ''}`;
    this.deps.log.warn({ vmId, pid: vm.pid, exit }, 'firecracker exited on its own');
    try {
      await this.release(vm);
    } catch (err) {
      message += `; and releasing its resources failed: ${errorMessage(err)}`;
    }
    this.setState(vmId, { state: 'error', pid: null, pidStartTime: null, lastError: message });
  }

  // --- recovery at daemon start

  /**
   * Adopts running VMs whose Firecracker still runs (pid, command line and start time checked),
   * releases what dead ones held, and finishes or rolls back operations a crash interrupted.
   */
  async recover(): Promise<void> {
    for (const vm of this.store.listVms()) {
      try {
        await this.deps.locks.run(vm.id, () => this.recoverOne(vm.id));
      } catch (err) {
        this.deps.log.error({ err: errorMessage(err), vmId: vm.id }, 'recovery failed');
        if (this.store.getVm(vm.id)) this.setState(vm.id, { state: 'error', lastError: `recovery after a daemon restart failed: ${errorMessage(err)}` });
      }
    }
    this.ensureWatching();
  }

  private async recoverOne(vmId: string): Promise<void> {
    // The daemon answers while it recovers: a request may have removed the VM before recovery reached it.
    const vm = this.store.getVm(vmId);
    if (!vm) return;
    const alive = vm.pid !== null && vm.pidStartTime !== null && isSameProcess(vm.pid, vm.pidStartTime, vm.id);
    const log = this.deps.log.child({ vmId, state: vm.state });
    switch (vm.state) {
      case 'running':
        if (alive) {
          log.info({ pid: vm.pid }, 'adopted running VM');
          return;
        }
        await this.release(vm);
        this.setState(vmId, { state: 'error', pid: null, pidStartTime: null, lastError: `firecracker (pid ${vm.pid}) exited while bangerd was not running` });
        log.warn('VM died while the daemon was down; released');
        return;
      case 'starting':
        // Roll back: the client that asked has gone; start again with banger vm start.
        await this.release(vm);
        this.setState(vmId, { state: 'error', pid: null, pidStartTime: null, lastError: 'the start was interrupted by a daemon restart; start it again' });
        log.warn('interrupted start rolled back');
        return;
      case 'stopping':
        // Finish: the guest was asked to stop already.
        await this.release(vm);
        this.setState(vmId, { state: 'stopped', pid: null, pidStartTime: null });
        log.warn('interrupted stop finished');
        return;
      case 'creating': {
        // Finish: make the disk again from the image.
        await this.release(vm);
        if (vm.diskStrategy === 'copy') await removeCopyDisk(this.ctx(), vmId, this.diskFile(vm));
        mkdirSync(this.dir(vmId), { recursive: true, mode: 0o700 });
        await this.prepareDisk(vmId, new Progress(this.deps.events, this.deps.log, null, vmId));
        this.setState(vmId, { state: 'stopped' });
        log.warn('interrupted create finished');
        return;
      }
      case 'stopped':
      case 'error':
        if (this.store.list(vmId).some((r) => r.kind !== 'file') || findFirecrackerProcesses().some((p) => p.vmId === vmId)) {
          await this.release(vm);
          log.warn('released leftovers');
        }
        return;
    }
  }

  /** At daemon stop: stop watching. VMs keep running; the next daemon adopts them. */
  close(): void {
    if (this.watchTimer) clearInterval(this.watchTimer);
    this.watchTimer = null;
  }

  // --- images and host

  async buildImage(p: Params<'image.build'>, progress: Progress): Promise<Image> {
    return buildImage(this.deps, p, progress);
  }

  async doctor(): Promise<unknown> {
    return doctor(this.deps, this);
  }

  async gc(dryRun: boolean): Promise<unknown> {
    return gc(this.deps, this, dryRun);
  }
}

function safeTail(file: string, n: number): string[] {
  try {
    return tailLines(file, n).filter((l) => l.trim() !== '');
  } catch {
    return [];
  }
}
