// Repositories over the database: images, VMs (spec + status) and the resource journal.
import type { Db } from './db.js';
import type { Image, Vm, VmSpec, VmNetwork, VmStatus, VmState } from '../core/models.js';
import type { Journal, ResourceKind, ResourceRecord } from '../core/ports.js';
import { AlreadyExistsError } from '../core/errors.js';

interface ImageRow {
  id: string;
  name: string;
  kernel_path: string;
  rootfs_path: string;
  initrd_path: string | null;
  boot_args: string;
  rootfs_size_bytes: number;
  created_at: string;
}

interface VmRow {
  id: string;
  name: string;
  image_id: string;
  vcpus: number;
  memory_mib: number;
  disk_size_bytes: number;
  nat: number;
  disk_strategy: string;
  net_index: number;
  host_ip: string;
  guest_ip: string;
  tap: string;
  mac: string;
  created_at: string;
  state: VmState;
  pid: number | null;
  pid_start_time: string | null;
  last_error: string | null;
  updated_at: string;
}

export type DiskStrategy = 'dm' | 'copy';
export type StoredVm = Vm & { diskStrategy: DiskStrategy };

const toImage = (r: ImageRow): Image => ({
  id: r.id,
  name: r.name,
  kernelPath: r.kernel_path,
  rootfsPath: r.rootfs_path,
  initrdPath: r.initrd_path,
  bootArgs: r.boot_args,
  rootfsSizeBytes: r.rootfs_size_bytes,
  createdAt: r.created_at,
});

const toVm = (r: VmRow): StoredVm => ({
  id: r.id,
  name: r.name,
  imageId: r.image_id,
  vcpus: r.vcpus,
  memoryMib: r.memory_mib,
  diskSizeBytes: r.disk_size_bytes,
  nat: r.nat === 1,
  diskStrategy: r.disk_strategy as DiskStrategy,
  netIndex: r.net_index,
  hostIp: r.host_ip,
  guestIp: r.guest_ip,
  tap: r.tap,
  mac: r.mac,
  createdAt: r.created_at,
  state: r.state,
  pid: r.pid,
  pidStartTime: r.pid_start_time,
  lastError: r.last_error,
  updatedAt: r.updated_at,
});

const VM_SELECT = `SELECT v.*, s.state, s.pid, s.pid_start_time, s.last_error, s.updated_at
  FROM vms v JOIN vm_status s ON s.vm_id = v.id`;

function isUniqueViolation(err: unknown): boolean {
  return (err as { code?: string })?.code === 'SQLITE_CONSTRAINT_UNIQUE' || (err as { code?: string })?.code === 'SQLITE_CONSTRAINT_PRIMARYKEY';
}

const imageExists = (name: string) => new AlreadyExistsError(`image "${name}" already exists; pick another name or remove it with banger image rm ${name}`);
const vmExists = (name: string) => new AlreadyExistsError(`a VM named "${name}" already exists; pick another name or remove it with banger vm rm ${name}`);

export class Store implements Journal {
  constructor(readonly db: Db) {}

  /** Fails early, before any work, when the name is taken (the UNIQUE index stays the guarantee). */
  assertImageNameFree(name: string): void {
    if (this.db.prepare('SELECT 1 FROM images WHERE name = ?').get(name)) throw imageExists(name);
  }

  assertVmNameFree(name: string): void {
    if (this.db.prepare('SELECT 1 FROM vms WHERE name = ?').get(name)) throw vmExists(name);
  }

  // --- images

  listImages(): Image[] {
    return (this.db.prepare('SELECT * FROM images ORDER BY created_at, name').all() as ImageRow[]).map(toImage);
  }

  getImage(id: string): Image | undefined {
    const r = this.db.prepare('SELECT * FROM images WHERE id = ?').get(id) as ImageRow | undefined;
    return r && toImage(r);
  }

  insertImage(img: Image): void {
    try {
      this.db
        .prepare(
          `INSERT INTO images (id, name, kernel_path, rootfs_path, initrd_path, boot_args, rootfs_size_bytes, created_at)
           VALUES (@id, @name, @kernelPath, @rootfsPath, @initrdPath, @bootArgs, @rootfsSizeBytes, @createdAt)`,
        )
        .run(img);
    } catch (err) {
      if (isUniqueViolation(err)) throw imageExists(img.name);
      throw err;
    }
  }

  deleteImage(id: string): void {
    this.db.prepare('DELETE FROM images WHERE id = ?').run(id);
  }

  countVmsUsingImage(imageId: string): number {
    return (this.db.prepare('SELECT count(*) AS n FROM vms WHERE image_id = ?').get(imageId) as { n: number }).n;
  }

  // --- VMs

  listVms(): StoredVm[] {
    return (this.db.prepare(`${VM_SELECT} ORDER BY v.created_at, v.name`).all() as VmRow[]).map(toVm);
  }

  getVm(id: string): StoredVm | undefined {
    const r = this.db.prepare(`${VM_SELECT} WHERE v.id = ?`).get(id) as VmRow | undefined;
    return r && toVm(r);
  }

  usedNetIndexes(): number[] {
    return (this.db.prepare('SELECT net_index FROM vms').all() as { net_index: number }[]).map((r) => r.net_index);
  }

  /**
   * Inserts a VM with the network chosen by pickNetwork from the indexes in use, in one
   * transaction, so two creates can never take the same address.
   */
  insertVm(spec: VmSpec & { diskStrategy: DiskStrategy }, state: VmState, pickNetwork: (used: number[]) => VmNetwork): StoredVm {
    const tx = this.db.transaction(() => {
      const net = pickNetwork(this.usedNetIndexes());
      try {
        this.db
          .prepare(
            `INSERT INTO vms (id, name, image_id, vcpus, memory_mib, disk_size_bytes, nat, disk_strategy, net_index, host_ip, guest_ip, tap, mac, created_at)
             VALUES (@id, @name, @imageId, @vcpus, @memoryMib, @diskSizeBytes, @nat, @diskStrategy, @netIndex, @hostIp, @guestIp, @tap, @mac, @createdAt)`,
          )
          .run({ ...spec, ...net, nat: spec.nat ? 1 : 0 });
      } catch (err) {
        if (isUniqueViolation(err) && /vms\.name/.test((err as Error).message)) {
          throw vmExists(spec.name);
        }
        throw err;
      }
      this.db
        .prepare('INSERT INTO vm_status (vm_id, state, pid, pid_start_time, last_error, updated_at) VALUES (?, ?, NULL, NULL, NULL, ?)')
        .run(spec.id, state, new Date().toISOString());
    });
    tx.immediate();
    return this.getVm(spec.id)!;
  }

  updateStatus(vmId: string, patch: Partial<Pick<VmStatus, 'state' | 'pid' | 'pidStartTime' | 'lastError'>>): StoredVm {
    const cur = this.getVm(vmId);
    if (!cur) throw new Error(`updateStatus: no VM ${vmId}`);
    const next = { ...cur, ...patch };
    this.db
      .prepare('UPDATE vm_status SET state = ?, pid = ?, pid_start_time = ?, last_error = ?, updated_at = ? WHERE vm_id = ?')
      .run(next.state, next.pid, next.pidStartTime, next.lastError, new Date().toISOString(), vmId);
    return this.getVm(vmId)!;
  }

  deleteVm(vmId: string): void {
    this.db.prepare('DELETE FROM vms WHERE id = ?').run(vmId);
  }

  // --- the resource journal

  record(vmId: string, kind: ResourceKind, handle: string, detail = ''): void {
    this.db
      .prepare('INSERT OR IGNORE INTO resources (vm_id, kind, handle, detail, recorded_at) VALUES (?, ?, ?, ?, ?)')
      .run(vmId, kind, handle, detail, new Date().toISOString());
  }

  forget(vmId: string, kind: ResourceKind, handle: string): void {
    this.db.prepare('DELETE FROM resources WHERE vm_id = ? AND kind = ? AND handle = ?').run(vmId, kind, handle);
  }

  list(vmId: string): ResourceRecord[] {
    return (this.db.prepare('SELECT * FROM resources WHERE vm_id = ? ORDER BY recorded_at, rowid').all(vmId) as ResourceRow[]).map(toResource);
  }

  listAll(): ResourceRecord[] {
    return (this.db.prepare('SELECT * FROM resources ORDER BY recorded_at, rowid').all() as ResourceRow[]).map(toResource);
  }
}

interface ResourceRow {
  vm_id: string;
  kind: ResourceKind;
  handle: string;
  detail: string;
  recorded_at: string;
}
const toResource = (r: ResourceRow): ResourceRecord => ({ vmId: r.vm_id, kind: r.kind, handle: r.handle, detail: r.detail, recordedAt: r.recorded_at });
