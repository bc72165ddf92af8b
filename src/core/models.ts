// The domain records. A VM row keeps the desired spec (what the user asked for) apart from
// the observed status (what exists on the host).

export const VM_STATES = ['creating', 'stopped', 'starting', 'running', 'stopping', 'error'] as const;
export type VmState = (typeof VM_STATES)[number];

export interface Image {
  id: string;
  name: string;
  kernelPath: string;
  rootfsPath: string;
  initrdPath: string | null;
  /** Extra kernel arguments of the image, space separated ("" for none). */
  bootArgs: string;
  rootfsSizeBytes: number;
  createdAt: string;
}

/** What the user asked for. Never changed by the host's state. */
export interface VmSpec {
  /** 12 lowercase hex characters. The TAP is "bg<id>", the mapper device "banger-<id>". */
  id: string;
  name: string;
  imageId: string;
  vcpus: number;
  memoryMib: number;
  diskSizeBytes: number;
  nat: boolean;
  createdAt: string;
}

/** The VM's place in the address pool, fixed at create and released at rm. */
export interface VmNetwork {
  /** Index of the VM's /30 in the pool. */
  netIndex: number;
  hostIp: string;
  guestIp: string;
  tap: string;
  mac: string;
}

/** What was observed on the host. */
export interface VmStatus {
  state: VmState;
  /** The real Firecracker pid while running. */
  pid: number | null;
  /** Start time of that pid (field 22 of /proc/<pid>/stat), to tell a reused pid apart. */
  pidStartTime: string | null;
  lastError: string | null;
  updatedAt: string;
}

export type Vm = VmSpec & VmNetwork & VmStatus;

/** The public JSON shape of `vm show --json` and the API's vm.get. */
export interface VmView {
  id: string;
  name: string;
  state: VmState;
  image: string;
  imageId: string;
  vcpus: number;
  memoryMib: number;
  diskSizeBytes: number;
  guestIp: string;
  hostIp: string;
  tap: string;
  mac: string;
  nat: boolean;
  pid: number | null;
  createdAt: string;
  lastError: string | null;
}

export const NAME_PATTERN = /^[a-z0-9][a-z0-9-]{0,62}$/;
export const ID_PATTERN = /^[0-9a-f]{12}$/;
