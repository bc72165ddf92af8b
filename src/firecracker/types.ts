// Request and response bodies of the Firecracker API, field for field as in the v1.16.1 spec
// (src/firecracker/swagger/firecracker.yaml). Names stay snake_case: these go on the wire as is.

/** The release whose API these types follow. */
export const FIRECRACKER_API_VERSION = '1.16.1';

/** Deprecated static CPU templates (x86 and aarch64). */
export type CpuTemplate = 'C3' | 'T2' | 'T2S' | 'T2CL' | 'T2A' | 'V1N1' | 'None';

/** PUT /machine-config. */
export interface MachineConfiguration {
  /** 1..32; 1 or even when smt is on. */
  vcpu_count: number;
  mem_size_mib: number;
  smt?: boolean;
  cpu_template?: CpuTemplate;
  track_dirty_pages?: boolean;
  huge_pages?: 'None' | '2M';
}

/** PUT /boot-source. */
export interface BootSource {
  kernel_image_path: string;
  boot_args?: string;
  initrd_path?: string;
}

export interface TokenBucket {
  size: number;
  refill_time: number;
  one_time_burst?: number;
}

export interface RateLimiter {
  bandwidth?: TokenBucket;
  ops?: TokenBucket;
}

/** PUT /drives/{drive_id}: a virtio-block drive (path_on_host) or a vhost-user one (socket). */
export interface Drive {
  drive_id: string;
  is_root_device: boolean;
  partuuid?: string;
  cache_type?: 'Unsafe' | 'Writeback';
  is_read_only?: boolean;
  path_on_host?: string;
  rate_limiter?: RateLimiter;
  io_engine?: 'Sync' | 'Async';
  socket?: string;
}

/** PUT /network-interfaces/{iface_id}. */
export interface NetworkInterface {
  iface_id: string;
  host_dev_name: string;
  guest_mac?: string;
  mtu?: number;
  rx_rate_limiter?: RateLimiter;
  tx_rate_limiter?: RateLimiter;
}

export type ActionType = 'FlushMetrics' | 'InstanceStart' | 'SendCtrlAltDel';

/** PUT /actions. */
export interface InstanceActionInfo {
  action_type: ActionType;
}

/** GET / */
export interface InstanceInfo {
  app_name: string;
  id: string;
  state: 'Not started' | 'Running' | 'Paused';
  vmm_version: string;
}

/** GET /version */
export interface FirecrackerVersion {
  firecracker_version: string;
}

/** Body of every error answer. */
export interface FirecrackerFault {
  fault_message?: string;
}
