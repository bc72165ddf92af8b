// What the QEMU stand-in runs for a configured microVM: the kernel command line Firecracker
// would give the guest, and the qemu-system-x86_64 argv that boots it. Pure: no I/O here.
import type { VmmState } from '../fc-standin/validation.js';

export const QEMU_BINARY = 'qemu-system-x86_64';

/**
 * The guest's kernel command line: the configured boot_args, plus what Firecracker adds for a root
 * drive (vmm builder: "root=/dev/vda" or "root=PARTUUID=<id>", then "rw" or "ro"), unless root= is
 * there already. "console=ttyS0 reboot=k" -> "console=ttyS0 reboot=k root=/dev/vda rw".
 */
export function kernelCommandLine(state: Pick<VmmState, 'bootSource' | 'drives'>): string {
  const args = (state.bootSource?.boot_args ?? '').split(/\s+/).filter((a) => a.length > 0);
  const root = state.drives.find((d) => d.is_root_device);
  if (root && !args.some((a) => a.startsWith('root='))) {
    args.push(root.partuuid !== undefined ? `root=PARTUUID=${root.partuuid}` : 'root=/dev/vda', root.is_read_only ? 'ro' : 'rw');
  }
  return args.join(' ');
}

/** A value inside a QEMU option list, where "," separates options: "a,b" -> "a,,b". */
export function qemuOptValue(value: string): string {
  return value.replaceAll(',', ',,');
}

export interface QemuPlan {
  /** The name of the abstract unix socket (no file; "\0" + name on the wire) that serves the HMP monitor. */
  monitorName: string;
}

/**
 * The qemu-system-x86_64 arguments for a started microVM, in software emulation (no -enable-kvm):
 * q35, the configured memory and vCPUs, the serial console on stdout (-nographic with the monitor
 * elsewhere), no reboot (a guest reboot ends QEMU, as reboot=k ends Firecracker), the kernel and
 * initrd, virtio-blk drives in Firecracker's order (root first, so it is /dev/vda), virtio-net on
 * each TAP, and an HMP monitor on an abstract unix socket.
 */
export function qemuArgv(state: VmmState, plan: QemuPlan): string[] {
  const boot = state.bootSource;
  if (!boot) throw new Error('qemuArgv: no boot source configured');
  const mc = state.machineConfig;
  const argv = [
    '-name',
    qemuOptValue(state.id),
    '-M',
    'q35',
    '-m',
    String(mc.mem_size_mib),
    '-smp',
    String(mc.vcpu_count),
    '-nographic',
    '-no-reboot',
    '-kernel',
    boot.kernel_image_path,
  ];
  if (boot.initrd_path !== undefined) argv.push('-initrd', boot.initrd_path);
  argv.push('-append', kernelCommandLine(state));
  for (const d of state.drives) {
    if (d.path_on_host === undefined) throw new Error(`drive ${d.drive_id}: only path_on_host drives boot under QEMU (no vhost-user)`);
    // Firecracker's Unsafe cache ignores the guest's flushes, as QEMU's cache=unsafe does.
    const cache = d.cache_type === 'Writeback' ? 'writeback' : 'unsafe';
    argv.push('-drive', `file=${qemuOptValue(d.path_on_host)},format=raw,if=virtio,cache=${cache},readonly=${d.is_read_only ? 'on' : 'off'}`);
  }
  state.networkInterfaces.forEach((n, i) => {
    argv.push('-netdev', `tap,id=net${i},ifname=${qemuOptValue(n.host_dev_name)},script=no,downscript=no`);
    // romfile= (none): no iPXE option ROM, which holds the firmware ~2 s for its Ctrl-B prompt; Firecracker has no firmware at all.
    const device = [`virtio-net-pci`, `netdev=net${i}`, 'romfile='];
    if (n.guest_mac !== undefined) device.push(`mac=${n.guest_mac}`);
    if (n.mtu !== undefined) device.push(`host_mtu=${n.mtu}`);
    argv.push('-device', device.join(','));
  });
  if (state.networkInterfaces.length === 0) argv.push('-nic', 'none');
  // tight=off: Node connects to "\0name" with the whole sizeof(sun_path) as the address length, zero-padded;
  // with QEMU's default tight=on the names differ and the connect is refused (ECONNREFUSED).
  argv.push('-chardev', `socket,id=monitor,path=${qemuOptValue(plan.monitorName)},server=on,wait=off,abstract=on,tight=off`, '-mon', 'chardev=monitor,mode=readline');
  return argv;
}
