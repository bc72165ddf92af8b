// The QEMU stand-in's pure part: the guest command line and the qemu-system-x86_64 argv.
import { describe, expect, it } from 'vitest';
import { newVmmState, type VmmState } from '../fc-standin/validation.js';
import { kernelCommandLine, qemuArgv, qemuOptValue } from './qemu.js';

function configured(patch: Partial<VmmState> = {}): VmmState {
  return {
    ...newVmmState('0123456789ab'),
    machineConfig: { vcpu_count: 2, mem_size_mib: 512, smt: false, track_dirty_pages: false, huge_pages: 'None' },
    bootSource: { kernel_image_path: '/img/vmlinux', initrd_path: '/img/initrd.img', boot_args: 'net.ifnames=0 console=ttyS0 reboot=k' },
    drives: [{ drive_id: 'rootfs', path_on_host: '/vms/a/rootfs.ext4', is_root_device: true, is_read_only: false }],
    networkInterfaces: [{ iface_id: 'eth0', host_dev_name: 'bg0123456789ab', guest_mac: '06:00:AC:10:00:02' }],
    ...patch,
  };
}

describe('kernelCommandLine', () => {
  it('adds the root device as Firecracker does for a writable root drive', () => {
    expect(kernelCommandLine(configured())).toBe('net.ifnames=0 console=ttyS0 reboot=k root=/dev/vda rw');
  });

  it('says ro for a read-only root drive and PARTUUID= for a partuuid', () => {
    const drives = [{ drive_id: 'rootfs', path_on_host: '/r', is_root_device: true, is_read_only: true, partuuid: '0eaa91a0-01' }];
    expect(kernelCommandLine(configured({ drives }))).toBe('net.ifnames=0 console=ttyS0 reboot=k root=PARTUUID=0eaa91a0-01 ro');
  });

  it('keeps a root= the boot arguments already give, and adds nothing without a root drive', () => {
    const bootSource = { kernel_image_path: '/k', boot_args: '  root=/dev/vdb  quiet ' };
    expect(kernelCommandLine(configured({ bootSource }))).toBe('root=/dev/vdb quiet');
    expect(kernelCommandLine(configured({ drives: [] }))).toBe('net.ifnames=0 console=ttyS0 reboot=k');
  });
});

describe('qemuArgv', () => {
  it('boots the configured guest under q35 in software emulation, with the monitor on an abstract socket', () => {
    expect(qemuArgv(configured(), { monitorName: 'fc-qemu/0123456789ab/42' })).toEqual([
      '-name', '0123456789ab',
      '-M', 'q35',
      '-m', '512',
      '-smp', '2',
      '-nographic',
      '-no-reboot',
      '-kernel', '/img/vmlinux',
      '-initrd', '/img/initrd.img',
      '-append', 'net.ifnames=0 console=ttyS0 reboot=k root=/dev/vda rw',
      '-drive', 'file=/vms/a/rootfs.ext4,format=raw,if=virtio,cache=unsafe,readonly=off',
      '-netdev', 'tap,id=net0,ifname=bg0123456789ab,script=no,downscript=no',
      '-device', 'virtio-net-pci,netdev=net0,romfile=,mac=06:00:AC:10:00:02',
      '-chardev', 'socket,id=monitor,path=fc-qemu/0123456789ab/42,server=on,wait=off,abstract=on,tight=off',
      '-mon', 'chardev=monitor,mode=readline',
    ]); // prettier-ignore
  });

  it('keeps the root drive first, maps the cache type and read-only flag, and escapes commas in paths', () => {
    const drives = [
      { drive_id: 'rootfs', path_on_host: '/vms/a,b/root', is_root_device: true, is_read_only: false },
      { drive_id: 'data', path_on_host: '/data.img', is_root_device: false, is_read_only: true, cache_type: 'Writeback' as const },
    ];
    const argv = qemuArgv(configured({ drives }), { monitorName: 'm' });
    expect(argv.filter((_, i) => argv[i - 1] === '-drive')).toEqual([
      'file=/vms/a,,b/root,format=raw,if=virtio,cache=unsafe,readonly=off',
      'file=/data.img,format=raw,if=virtio,cache=writeback,readonly=on',
    ]);
  });

  it('has no NIC without network interfaces, and one netdev per interface with its MTU', () => {
    expect(qemuArgv(configured({ networkInterfaces: [] }), { monitorName: 'm' })).toContain('none');
    const argv = qemuArgv(
      configured({
        networkInterfaces: [
          { iface_id: 'eth0', host_dev_name: 'tap0' },
          { iface_id: 'eth1', host_dev_name: 'tap1', guest_mac: '02:00:00:00:00:01', mtu: 1400 },
        ],
      }),
      { monitorName: 'm' },
    );
    expect(argv.filter((_, i) => argv[i - 1] === '-netdev' || argv[i - 1] === '-device')).toEqual([
      'tap,id=net0,ifname=tap0,script=no,downscript=no',
      'virtio-net-pci,netdev=net0,romfile=',
      'tap,id=net1,ifname=tap1,script=no,downscript=no',
      'virtio-net-pci,netdev=net1,romfile=,mac=02:00:00:00:00:01,host_mtu=1400',
    ]);
  });

  it('refuses a vhost-user drive, which QEMU cannot take from a Firecracker config', () => {
    const drives = [{ drive_id: 'rootfs', socket: '/run/vhost.sock', is_root_device: true }];
    expect(() => qemuArgv(configured({ drives }), { monitorName: 'm' })).toThrow(/vhost-user/);
  });
});

describe('qemuOptValue', () => {
  it('doubles commas, which QEMU option lists use as separators', () => {
    expect(qemuOptValue('/a,b,,c')).toBe('/a,,b,,,,c');
    expect(qemuOptValue('/plain/path')).toBe('/plain/path');
  });
});
