// The daemon: the API methods over the store, the VM lifecycle and the image operations.
// One instance per process; compose.ts wires it with real adapters, tests with fakes.
import type { Logger } from 'pino';
import { rmSync, mkdirSync } from 'node:fs';
import { FailedPreconditionError, InvalidArgumentError, wrapError } from '../core/errors.js';
import type { Settings } from '../core/config.js';
import type { Paths } from '../core/paths.js';
import { vmDir } from '../core/paths.js';
import type { Clock, Runner } from '../core/ports.js';
import { newId, generateName } from '../core/names.js';
import { VERSION } from '../core/build-info.js';
import type { DiskStrategy, Store } from '../store/store.js';
import type { EventBus } from './events.js';
import type { Method, Params } from './schemas.js';
import { KeyedLock } from './locks.js';
import { Progress, findImage, findVm, vmView, type ServiceContext } from './service.js';
import { addImage, deleteImage, type ImageDeps } from './image-ops.js';
import { VmRuntime, type RuntimeOptions } from './vm-runtime.js';

export interface DaemonDeps {
  store: Store;
  events: EventBus;
  log: Logger;
  paths: Paths;
  settings: Settings;
  runner: Runner;
  clock: Clock;
  buildId: string;
  /** Called when daemon.shutdown is asked for; the server stops after answering. */
  requestShutdown: () => void;
  customizeRootfs: ImageDeps['customizeRootfs'];
  runtimeOptions?: Partial<RuntimeOptions>;
  /** Set by the Daemon: the per-VM locks, shared with the runtime's watcher. */
  locks?: KeyedLock;
}

export type RuntimeDeps = DaemonDeps & { locks: KeyedLock };

export interface CallContext {
  opId: string | null;
}

type Handler<M extends Method> = (params: Params<M>, call: CallContext) => Promise<unknown>;

export class Daemon {
  readonly startedAt = new Date().toISOString();
  readonly locks = new KeyedLock();
  readonly runtime: VmRuntime;
  private readonly ctx: ServiceContext;

  constructor(readonly deps: DaemonDeps) {
    this.ctx = { store: deps.store, events: deps.events, log: deps.log };
    this.runtime = new VmRuntime({ ...deps, locks: this.locks }, deps.runtimeOptions);
  }

  progress(call: CallContext, vmId: string | null): Progress {
    return new Progress(this.deps.events, this.deps.log, call.opId, vmId);
  }

  private emitVm(vmId: string): void {
    const vm = this.deps.store.getVm(vmId);
    if (vm) this.deps.events.emit({ type: 'vm.state', at: new Date().toISOString(), vm: vmView(this.ctx, vm) });
  }

  readonly handlers: { [M in Method]: Handler<M> } = {
    'daemon.info': async () => ({
      version: VERSION,
      buildId: this.deps.buildId,
      pid: process.pid,
      startedAt: this.startedAt,
      socket: this.deps.settings.socket,
      database: this.deps.paths.database,
      log: this.deps.paths.daemonLog,
      vms: this.deps.store.listVms().length,
      images: this.deps.store.listImages().length,
    }),
    'daemon.shutdown': async () => {
      setImmediate(() => this.deps.requestShutdown());
      return { shuttingDown: true, pid: process.pid };
    },

    'image.list': async () => this.deps.store.listImages(),
    'image.get': async (p) => findImage(this.ctx, p.image),
    'image.add': async (p, call) => {
      const image = await addImage(this.deps, p, this.progress(call, null));
      this.deps.events.emit({ type: 'image.changed', at: new Date().toISOString() });
      return image;
    },
    'image.build': async (p, call) => {
      const image = await this.runtime.buildImage(p, this.progress(call, null));
      this.deps.events.emit({ type: 'image.changed', at: new Date().toISOString() });
      return image;
    },
    'image.delete': async (p) => {
      const image = deleteImage(this.deps, p.image);
      this.deps.events.emit({ type: 'image.changed', at: new Date().toISOString() });
      return image;
    },

    'vm.list': async () => this.deps.store.listVms().map((vm) => vmView(this.ctx, vm)),
    'vm.get': async (p) => vmView(this.ctx, findVm(this.ctx, p.vm)),
    'vm.create': async (p, call) => this.createVm(p, call),
    'vm.start': async (p, call) => {
      const vm = findVm(this.ctx, p.vm);
      return this.locks.run(vm.id, async () => {
        await this.runtime.start(vm.id, this.progress(call, vm.id));
        return vmView(this.ctx, this.deps.store.getVm(vm.id)!);
      });
    },
    'vm.stop': async (p, call) => {
      const vm = findVm(this.ctx, p.vm);
      return this.locks.run(vm.id, async () => {
        await this.runtime.stop(vm.id, { timeoutMs: (p.timeoutSeconds ?? 10) * 1000, force: p.force ?? false }, this.progress(call, vm.id));
        return vmView(this.ctx, this.deps.store.getVm(vm.id)!);
      });
    },
    'vm.restart': async (p, call) => {
      const vm = findVm(this.ctx, p.vm);
      return this.locks.run(vm.id, async () => {
        const progress = this.progress(call, vm.id);
        await this.runtime.stop(vm.id, { timeoutMs: (p.timeoutSeconds ?? 10) * 1000, force: false, ifRunning: true }, progress);
        await this.runtime.start(vm.id, progress);
        return vmView(this.ctx, this.deps.store.getVm(vm.id)!);
      });
    },
    'vm.delete': async (p, call) => {
      const vm = findVm(this.ctx, p.vm);
      return this.locks.run(vm.id, async () => {
        const cur = this.deps.store.getVm(vm.id);
        if (!cur) return { id: vm.id, name: vm.name, deleted: true };
        const active = cur.state === 'running' || cur.state === 'starting' || cur.state === 'stopping';
        if (active && !p.force) {
          throw new FailedPreconditionError(`VM "${cur.name}" is ${cur.state}; stop it first with banger vm stop ${cur.name}, or use banger vm rm --force ${cur.name}`);
        }
        const view = vmView(this.ctx, cur);
        await this.runtime.destroy(cur.id, this.progress(call, cur.id));
        this.deps.events.emit({ type: 'vm.deleted', at: new Date().toISOString(), vmId: cur.id, name: cur.name });
        return { ...view, deleted: true };
      });
    },

    'host.doctor': async () => this.runtime.doctor(),
    'host.gc': async (p) => this.runtime.gc(p.dryRun ?? false),
  };

  private async createVm(p: Params<'vm.create'>, call: CallContext) {
    const store = this.deps.store;
    const image = findImage(this.ctx, p.image);
    const name = p.name ?? generateName((n) => store.listVms().some((v) => v.name === n));
    store.assertVmNameFree(name);
    const diskSizeBytes = p.diskSizeBytes ?? image.rootfsSizeBytes;
    if (diskSizeBytes < image.rootfsSizeBytes) {
      throw new InvalidArgumentError(
        `disk size ${diskSizeBytes} bytes is smaller than image "${image.name}" (${image.rootfsSizeBytes} bytes); give --disk-size of at least that`,
      );
    }
    let strategy: DiskStrategy;
    try {
      await this.runtime.checkPool();
      strategy = await this.runtime.diskStrategy();
    } catch (err) {
      throw wrapError(`creating VM ${name}`, err);
    }
    const id = newId();
    const progress = this.progress(call, id);
    const vm = store.insertVm(
      {
        id,
        name,
        imageId: image.id,
        vcpus: p.vcpus ?? 1,
        memoryMib: p.memoryMib ?? 512,
        diskSizeBytes,
        nat: p.nat ?? true,
        diskStrategy: strategy,
        createdAt: new Date().toISOString(),
      },
      'creating',
      (used) => this.runtime.pickNetwork(id, used),
    );
    this.emitVm(vm.id);
    return this.locks.run(vm.id, async () => {
      mkdirSync(vmDir(this.deps.paths, vm.id), { recursive: true, mode: 0o700 });
      try {
        await this.runtime.prepareDisk(vm.id, progress);
      } catch (err) {
        // A create that fails leaves nothing: no files, no record.
        await this.runtime.destroy(vm.id, progress).catch((e) => this.deps.log.error({ err: e, vmId: vm.id }, 'cleanup after failed create'));
        rmSync(vmDir(this.deps.paths, vm.id), { recursive: true, force: true });
        this.deps.events.emit({ type: 'vm.deleted', at: new Date().toISOString(), vmId: vm.id, name });
        throw wrapError(`creating VM ${name}`, err);
      }
      store.updateStatus(vm.id, { state: 'stopped' });
      this.emitVm(vm.id);
      if (p.start ?? true) {
        await this.runtime.start(vm.id, progress);
        if (p.waitSsh) await this.runtime.waitSsh(vm.id, progress, (p.waitSshTimeoutSeconds ?? 120) * 1000);
      }
      return vmView(this.ctx, store.getVm(vm.id)!);
    });
  }
}
