import { describe, expect, it } from 'vitest';
import type { Image, Vm } from '../../src/core/models.js';
import { BangerError, FailedPreconditionError } from '../../src/core/errors.js';
import { applyFirecrackerConfig, buildFirecrackerConfig, configureSteps, type ConfigureClient } from '../../src/firecracker/config.js';

const vm: Vm = {
  id: '0a1b2c3d4e5f',
  name: 'dev',
  imageId: 'ffeeddccbbaa',
  vcpus: 2,
  memoryMib: 1024,
  diskSizeBytes: 4 * 1024 ** 3,
  nat: true,
  createdAt: '2025-01-01T00:00:00.000Z',
  netIndex: 0,
  hostIp: '172.16.0.1',
  guestIp: '172.16.0.2',
  tap: 'bg0a1b2c3d4e5f',
  mac: '06:00:ac:10:00:02',
  state: 'starting',
  pid: null,
  pidStartTime: null,
  lastError: null,
  updatedAt: '2025-01-01T00:00:00.000Z',
};

const image: Image = {
  id: 'ffeeddccbbaa',
  name: 'debian',
  kernelPath: '/data/images/ffeeddccbbaa/vmlinux',
  rootfsPath: '/data/images/ffeeddccbbaa/rootfs.ext4',
  initrdPath: null,
  bootArgs: '  root=/dev/vda   rw\tquiet ',
  rootfsSizeBytes: 1024 ** 3,
  createdAt: '2025-01-01T00:00:00.000Z',
};

const ROOT = '/dev/mapper/banger-0a1b2c3d4e5f';

describe('buildFirecrackerConfig', () => {
  it('orders the boot args: image args, console, reboot, panic, hostname, ip', () => {
    const config = buildFirecrackerConfig(vm, image, ROOT);
    expect(config.bootArgs).toEqual([
      'root=/dev/vda',
      'rw',
      'quiet',
      'console=ttyS0',
      'reboot=k',
      'panic=1',
      'systemd.hostname=dev',
      'ip=172.16.0.2::172.16.0.1:255.255.255.252::eth0:off',
    ]);
  });

  it('builds exactly the bodies Firecracker is sent, with no initrd when the image has none', () => {
    const config = buildFirecrackerConfig(vm, image, ROOT);
    expect(config.machineConfig).toStrictEqual({ vcpu_count: 2, mem_size_mib: 1024 });
    expect(config.bootSource).toStrictEqual({
      kernel_image_path: '/data/images/ffeeddccbbaa/vmlinux',
      boot_args:
        'root=/dev/vda rw quiet console=ttyS0 reboot=k panic=1 systemd.hostname=dev ip=172.16.0.2::172.16.0.1:255.255.255.252::eth0:off',
    });
    expect(config.drives).toStrictEqual([
      { drive_id: 'rootfs', path_on_host: '/dev/mapper/banger-0a1b2c3d4e5f', is_root_device: true, is_read_only: false },
    ]);
    expect(config.networkInterfaces).toStrictEqual([{ iface_id: 'eth0', host_dev_name: 'bg0a1b2c3d4e5f', guest_mac: '06:00:ac:10:00:02' }]);
  });

  it('passes the initrd and starts the args with banger own ones when the image has no args', () => {
    const config = buildFirecrackerConfig(vm, { ...image, initrdPath: '/data/images/x/initrd.img', bootArgs: '' }, '/vms/x/disk.ext4');
    expect(config.bootSource).toStrictEqual({
      kernel_image_path: '/data/images/ffeeddccbbaa/vmlinux',
      initrd_path: '/data/images/x/initrd.img',
      boot_args: 'console=ttyS0 reboot=k panic=1 systemd.hostname=dev ip=172.16.0.2::172.16.0.1:255.255.255.252::eth0:off',
    });
    expect(config.drives[0].path_on_host).toBe('/vms/x/disk.ext4');
  });
});

/** Records calls like a client would make them; fails the step named in failOn. */
class RecordingClient implements ConfigureClient {
  calls: [string, unknown][] = [];
  constructor(private failOn?: string) {}
  private async hit(what: string, body: unknown): Promise<void> {
    this.calls.push([what, body]);
    if (what === this.failOn) throw new FailedPreconditionError(`PUT /${what} answered 400: no`);
  }
  putMachineConfig = (b: unknown) => this.hit('machine-config', b);
  putBootSource = (b: unknown) => this.hit('boot-source', b);
  putDrive = (b: { drive_id: string }) => this.hit(`drives/${b.drive_id}`, b);
  putNetworkInterface = (b: { iface_id: string }) => this.hit(`network-interfaces/${b.iface_id}`, b);
}

describe('applyFirecrackerConfig', () => {
  it('puts machine config, boot source, drives, then network interfaces', async () => {
    const config = buildFirecrackerConfig(vm, image, ROOT);
    const client = new RecordingClient();
    await applyFirecrackerConfig(client, config);
    expect(client.calls).toEqual([
      ['machine-config', config.machineConfig],
      ['boot-source', config.bootSource],
      ['drives/rootfs', config.drives[0]],
      ['network-interfaces/eth0', config.networkInterfaces[0]],
    ]);
    expect(configureSteps(config).map((s) => s.name)).toEqual([
      'vmm.configure machine-config',
      'vmm.configure boot-source',
      'vmm.configure drives/rootfs',
      'vmm.configure network-interfaces/eth0',
    ]);
  });

  it('stops at the failing step and names it in the error, keeping the error kind', async () => {
    const client = new RecordingClient('boot-source');
    const err = await applyFirecrackerConfig(client, buildFirecrackerConfig(vm, image, ROOT)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BangerError);
    expect((err as BangerError).message).toBe('vmm.configure boot-source: PUT /boot-source answered 400: no');
    expect((err as BangerError).code).toBe('failed_precondition');
    expect(client.calls.map((c) => c[0])).toEqual(['machine-config', 'boot-source']);
  });
});
