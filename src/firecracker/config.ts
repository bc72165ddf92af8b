// The Firecracker configuration of one VM: a pure plan (buildFirecrackerConfig) and its apply
// (applyFirecrackerConfig), which PUTs the plan over the API as named steps.
import { wrapError } from '../core/errors.js';
import type { Image, Vm } from '../core/models.js';
import type { FirecrackerClient } from './api.js';
import type { BootSource, Drive, MachineConfiguration, NetworkInterface } from './types.js';

export const ROOT_DRIVE_ID = 'rootfs';
export const GUEST_IFACE = 'eth0';
/** Every VM owns a /30: one host address, one guest address. */
export const GUEST_NETMASK = '255.255.255.252';

export interface FirecrackerConfig {
  machineConfig: MachineConfiguration;
  bootSource: BootSource;
  drives: Drive[];
  networkInterfaces: NetworkInterface[];
  /** The kernel command line as a list; bootSource.boot_args is these joined by spaces. */
  bootArgs: string[];
}

/**
 * Kernel arguments: the image's own first, then banger's, so banger's win where the kernel takes
 * the last occurrence. The ip= form is ip=<client>::<gateway>:<netmask>:<hostname>:<device>:<autoconf>,
 * e.g. "ip=172.16.0.2::172.16.0.1:255.255.255.252::eth0:off" (Documentation/admin-guide/nfs/nfsroot.rst).
 */
export function buildBootArgs(vm: Vm, image: Image): string[] {
  return [
    ...image.bootArgs.split(/\s+/).filter((a) => a.length > 0),
    'console=ttyS0',
    'reboot=k',
    'panic=1',
    `systemd.hostname=${vm.name}`,
    `ip=${vm.guestIp}::${vm.hostIp}:${GUEST_NETMASK}::${GUEST_IFACE}:off`,
  ];
}

export function buildFirecrackerConfig(vm: Vm, image: Image, rootDiskPath: string): FirecrackerConfig {
  const bootArgs = buildBootArgs(vm, image);
  const bootSource: BootSource = { kernel_image_path: image.kernelPath, boot_args: bootArgs.join(' ') };
  if (image.initrdPath) bootSource.initrd_path = image.initrdPath;
  return {
    machineConfig: { vcpu_count: vm.vcpus, mem_size_mib: vm.memoryMib },
    bootSource,
    drives: [{ drive_id: ROOT_DRIVE_ID, path_on_host: rootDiskPath, is_root_device: true, is_read_only: false }],
    networkInterfaces: [{ iface_id: GUEST_IFACE, host_dev_name: vm.tap, guest_mac: vm.mac }],
    bootArgs,
  };
}

/** The part of FirecrackerClient that configuring needs. */
export type ConfigureClient = Pick<FirecrackerClient, 'putMachineConfig' | 'putBootSource' | 'putDrive' | 'putNetworkInterface'>;

export interface ConfigureStep {
  /** "vmm.configure machine-config", "vmm.configure drives/rootfs", ... */
  name: string;
  run: (client: ConfigureClient) => Promise<void>;
}

/** The configuration as an ordered list of named API calls: machine, boot source, drives, NICs. */
export function configureSteps(config: FirecrackerConfig): ConfigureStep[] {
  return [
    { name: 'vmm.configure machine-config', run: (c) => c.putMachineConfig(config.machineConfig) },
    { name: 'vmm.configure boot-source', run: (c) => c.putBootSource(config.bootSource) },
    ...config.drives.map((d) => ({ name: `vmm.configure drives/${d.drive_id}`, run: (c: ConfigureClient) => c.putDrive(d) })),
    ...config.networkInterfaces.map((n) => ({
      name: `vmm.configure network-interfaces/${n.iface_id}`,
      run: (c: ConfigureClient) => c.putNetworkInterface(n),
    })),
  ];
}

/** Runs configureSteps in order; a failure stops there and names its step. */
export async function applyFirecrackerConfig(client: ConfigureClient, config: FirecrackerConfig): Promise<void> {
  for (const step of configureSteps(config)) {
    try {
      await step.run(client);
    } catch (err) {
      throw wrapError(step.name, err);
    }
  }
}
