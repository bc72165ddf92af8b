// The VM lifecycle on the host: disks, network, Firecracker. Filled in by the lifecycle work.
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { FailedPreconditionError } from '../core/errors.js';
import type { Image, VmNetwork } from '../core/models.js';
import { vmDir } from '../core/paths.js';
import { parsePool, subnetForIndex, firstFreeIndex, tapName, macForGuestIp } from '../core/net.js';
import type { DiskStrategy } from '../store/store.js';
import type { DaemonDeps } from './daemon.js';
import type { Progress } from './service.js';
import type { Params } from './schemas.js';
import { copyFile } from './image-ops.js';

export interface StopOptions {
  timeoutMs: number;
  force: boolean;
  /** Restart: a VM that is not running is fine. */
  ifRunning?: boolean;
}

const notYet = (what: string) => new FailedPreconditionError(`${what} is not implemented yet`);

export class VmRuntime {
  constructor(private readonly deps: DaemonDeps) {}

  async diskStrategy(): Promise<DiskStrategy> {
    return 'copy';
  }

  pickNetwork(vmId: string, used: number[]): VmNetwork {
    const pool = parsePool(this.deps.settings.netPool);
    const netIndex = firstFreeIndex(pool, used);
    const subnet = subnetForIndex(pool, netIndex);
    return { netIndex, hostIp: subnet.hostIp, guestIp: subnet.guestIp, tap: tapName(vmId), mac: macForGuestIp(subnet.guestIp) };
  }

  diskFile(vmId: string): string {
    return join(vmDir(this.deps.paths, vmId), 'rootfs.ext4');
  }

  async prepareDisk(vmId: string, progress: Progress): Promise<void> {
    const vm = this.deps.store.getVm(vmId)!;
    const image = this.deps.store.getImage(vm.imageId) as Image;
    progress.phase('disk.copy');
    await copyFile(this.deps.runner, image.rootfsPath, this.diskFile(vmId));
  }

  async start(_vmId: string, _progress: Progress): Promise<void> {
    throw notYet('vm start');
  }

  async stop(_vmId: string, _opts: StopOptions, _progress: Progress): Promise<void> {
    throw notYet('vm stop');
  }

  async waitSsh(_vmId: string, _progress: Progress): Promise<void> {
    throw notYet('--wait-ssh');
  }

  /** Releases everything the VM owns on the host and deletes its files and record. */
  async destroy(vmId: string, progress: Progress): Promise<void> {
    progress.phase('vm.delete');
    rmSync(vmDir(this.deps.paths, vmId), { recursive: true, force: true });
    this.deps.store.deleteVm(vmId);
  }

  /** At daemon start: adopt running VMs, finish or roll back interrupted operations. */
  async recover(): Promise<void> {}

  /** At daemon stop: stop watching (VMs keep running). */
  close(): void {}

  async buildImage(_p: Params<'image.build'>, _progress: Progress): Promise<Image> {
    throw notYet('image build');
  }

  async doctor(): Promise<unknown> {
    throw notYet('doctor');
  }

  async gc(_dryRun: boolean): Promise<unknown> {
    throw notYet('gc');
  }
}
