// The daemon's operations, apart from HTTP: resolves names, validates meaning, serializes work
// per VM and emits events. Host work is delegated to the lifecycle (VM) and image modules.
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { Image, VmView } from '../core/models.js';
import { NotFoundError, InvalidArgumentError } from '../core/errors.js';
import type { Store, StoredVm } from '../store/store.js';
import type { EventBus } from './events.js';

/** How a name or an id prefix picks one record. */
export function resolveRef<T extends { id: string; name: string }>(what: 'VM' | 'image', ref: string, all: T[]): T {
  const byName = all.find((x) => x.name === ref);
  if (byName) return byName;
  if (/^[0-9a-f]{1,12}$/.test(ref)) {
    const hits = all.filter((x) => x.id.startsWith(ref));
    if (hits.length === 1) return hits[0];
    if (hits.length > 1) {
      throw new InvalidArgumentError(`"${ref}" matches ${hits.length} ${what}s (${hits.map((h) => h.name).join(', ')}); give more of the id or the name`);
    }
  }
  const list = what === 'VM' ? 'banger vm ls' : 'banger image ls';
  throw new NotFoundError(`no ${what} named "${ref}" or with an id starting so; see ${list}`);
}

export function toVmView(vm: StoredVm, image: Image | undefined): VmView {
  return {
    id: vm.id,
    name: vm.name,
    state: vm.state,
    image: image?.name ?? vm.imageId,
    imageId: vm.imageId,
    vcpus: vm.vcpus,
    memoryMib: vm.memoryMib,
    diskSizeBytes: vm.diskSizeBytes,
    guestIp: vm.guestIp,
    hostIp: vm.hostIp,
    tap: vm.tap,
    mac: vm.mac,
    nat: vm.nat,
    pid: vm.pid,
    createdAt: vm.createdAt,
    lastError: vm.lastError,
  };
}

/** Reports progress phases of one operation on the event bus and to the log. */
export class Progress {
  private readonly started = Date.now();
  constructor(
    private readonly events: EventBus,
    private readonly log: Logger,
    readonly opId: string | null,
    readonly vmId: string | null,
  ) {}
  phase(phase: string, detail?: string): void {
    const elapsedMs = Date.now() - this.started;
    this.log.info({ opId: this.opId, vmId: this.vmId, phase, elapsedMs, detail }, 'phase');
    this.events.emit({ type: 'progress', at: new Date().toISOString(), opId: this.opId, vmId: this.vmId, phase, elapsedMs, detail });
  }
}

export interface ServiceContext {
  store: Store;
  events: EventBus;
  log: Logger;
}

export function newOpId(): string {
  return randomUUID();
}

export function vmView(ctx: ServiceContext, vm: StoredVm): VmView {
  return toVmView(vm, ctx.store.getImage(vm.imageId));
}

export function findVm(ctx: Pick<ServiceContext, 'store'>, ref: string): StoredVm {
  return resolveRef('VM', ref, ctx.store.listVms());
}

export function findImage(ctx: Pick<ServiceContext, 'store'>, ref: string): Image {
  return resolveRef('image', ref, ctx.store.listImages());
}
