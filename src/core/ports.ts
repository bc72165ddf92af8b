// Ports: the interfaces through which the core reaches the host. Adapters live in src/host,
// src/firecracker and src/store; tests inject fakes.

export interface RunOptions {
  /** When false, a non-zero exit is returned instead of thrown (for probes like `iptables -C`). */
  check?: boolean;
  /** Written to the command's stdin. */
  input?: string;
  /** Killed (SIGKILL) after this long; the result reports timedOut. Default 30 s. */
  timeoutMs?: number;
  env?: Record<string, string>;
  /** Called with each chunk of stdout as it arrives (progress of long tools). */
  onStdout?: (chunk: string) => void;
}

export interface RunResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

export interface SpawnOptions {
  /** File that receives the process's stdout and stderr (appended). */
  outputFile?: string;
  env?: Record<string, string>;
  cwd?: string;
}

export interface SpawnedProcess {
  /** Pid of the directly spawned process (a wrapper such as sudo or sh, not necessarily the target). */
  pid: number;
  /** Resolves when the spawned process exits, with its code or signal. */
  exited: Promise<{ code: number | null; signal: string | null }>;
}

/**
 * Runs host tools with an argument vector, never a shell string. Tools are found through PATH.
 * run() throws HostCommandError on a non-zero exit unless check is false.
 */
export interface Runner {
  run(argv: string[], options?: RunOptions): Promise<RunResult>;
  /** Starts a long-lived detached process (its own session), not waited for. */
  spawn(argv: string[], options?: SpawnOptions): SpawnedProcess;
}

/** Kinds of host handles a VM can own. */
export type ResourceKind =
  | 'loop' // a loop device, handle "/dev/loopN"
  | 'dm' // a device-mapper name, handle "banger-<id>"
  | 'tap' // a TAP device name, handle "bg<id>"
  | 'nat' // an iptables rule set, handle = the uplink interface it was applied for
  | 'process' // a Firecracker process, handle "<pid>:<starttime>"
  | 'socket' // an API socket path
  | 'file'; // a file the VM owns on the host (copy-strategy disk, etc.)

export interface ResourceRecord {
  vmId: string;
  kind: ResourceKind;
  handle: string;
  /** Free-form detail (for loops: the backing file; for nat: the guest address). */
  detail: string;
  recordedAt: string;
}

/**
 * The resource journal: every host handle a VM owns, recorded the moment it exists and
 * forgotten the moment it is gone. Backed by SQLite in the daemon; an in-memory one in tests.
 */
export interface Journal {
  record(vmId: string, kind: ResourceKind, handle: string, detail?: string): void;
  forget(vmId: string, kind: ResourceKind, handle: string): void;
  list(vmId: string): ResourceRecord[];
  listAll(): ResourceRecord[];
}

export interface Clock {
  now(): Date;
  sleep(ms: number): Promise<void>;
}

export const systemClock: Clock = {
  now: () => new Date(),
  sleep: (ms) => new Promise((r) => setTimeout(r, ms)),
};
