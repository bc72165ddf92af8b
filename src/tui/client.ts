// What the TUI needs from the daemon and the host, as one small interface: the daemon-backed
// implementation lives in daemon-client.ts, tests pass a fake.
import type { Image, VmView } from '../core/models.js';

/** Events of GET /v1/events as the TUI reads them; "hello" opens every stream. */
export type TuiEvent =
  | { type: 'hello'; at: string }
  | { type: 'vm.state'; at: string; vm: VmView }
  | { type: 'vm.deleted'; at: string; vmId: string; name: string }
  | { type: 'image.changed'; at: string }
  | { type: 'progress'; at: string; opId: string | null; vmId: string | null; phase: string; elapsedMs: number; detail?: string };

export interface CreateRequest {
  name?: string;
  image: string;
  vcpus: number;
  memoryMib: number;
  diskSizeBytes?: number;
  nat: boolean;
  start: boolean;
}

export interface Subscription {
  close(): void;
}

export interface SubscribeHandlers {
  onEvent(event: TuiEvent): void;
  /** The stream ended (daemon gone or restarting); not called after close(). */
  onClose(error?: Error): void;
  /** Something the user should know about the connection ("replacing bangerd … with build …"). */
  onNotice?(text: string): void;
}

export interface TuiClient {
  list(): Promise<VmView[]>;
  get(vm: string): Promise<VmView>;
  images(): Promise<Image[]>;
  /** Long operations carry an opId so that their progress events can be told apart. */
  create(request: CreateRequest, opId: string): Promise<VmView>;
  start(vm: string, opId: string): Promise<VmView>;
  stop(vm: string, opId: string, opts?: { force?: boolean }): Promise<VmView>;
  restart(vm: string, opId: string): Promise<VmView>;
  delete(vm: string, opId: string, opts?: { force?: boolean }): Promise<unknown>;
  /** Opens the event stream; rejects when the daemon cannot be reached. */
  subscribe(handlers: SubscribeHandlers): Promise<Subscription>;
  /** The last lines of a VM's serial console ([] when it has none yet). */
  consoleTail(vmId: string, lines: number): Promise<string[]>;
  /** Calls onData with the console's recent content, then with what is appended, until signal aborts. */
  followConsole(vmId: string, onData: (chunk: string) => void, signal: AbortSignal): Promise<void>;
  /** Hands the terminal to an interactive ssh session and takes it back; resolves ssh's exit code. */
  ssh(vm: VmView): Promise<number>;
}

/** A fresh operation id, as the daemon accepts in X-Banger-Op: [A-Za-z0-9-]{1,64}. */
export function newOpId(): string {
  return `tui-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 10)}`;
}

/** The message of anything thrown, for the status line. */
export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}
