// A TuiClient for tests: VMs and images in memory, an event stream the test drives (events,
// closing it, refusing to reconnect), and operations that wait until the test settles them.
import type { Image, VmView } from '../../src/core/models.js';
import type { CreateRequest, SubscribeHandlers, Subscription, TuiClient, TuiEvent } from '../../src/tui/client.js';

export interface PendingOp {
  method: 'create' | 'start' | 'stop' | 'restart' | 'delete';
  vm: string | null;
  body: unknown;
  opId: string;
  resolve(value: unknown): void;
  reject(err: Error): void;
}

let lastId = 0;

export function makeVm(name: string, extra: Partial<VmView> = {}): VmView {
  const n = ++lastId;
  return {
    id: `a${n.toString(16).padStart(11, '0')}`,
    name,
    state: 'stopped',
    image: 'debian',
    imageId: 'aaaaaaaaaaaa',
    vcpus: 1,
    memoryMib: 512,
    diskSizeBytes: 4 * 2 ** 30,
    guestIp: `172.16.${n >> 6}.${(n & 63) * 4 + 2}`,
    hostIp: `172.16.${n >> 6}.${(n & 63) * 4 + 1}`,
    tap: `bg${name}`,
    mac: '06:00:ac:10:00:02',
    nat: true,
    pid: null,
    createdAt: new Date(Date.now() - 90_000).toISOString(),
    lastError: null,
    ...extra,
  };
}

export function makeImage(name: string, extra: Partial<Image> = {}): Image {
  return {
    id: `b${(++lastId).toString(16).padStart(11, '0')}`,
    name,
    kernelPath: `/images/${name}/vmlinux`,
    rootfsPath: `/images/${name}/rootfs.ext4`,
    initrdPath: null,
    bootArgs: '',
    rootfsSizeBytes: 2 ** 30,
    createdAt: new Date(Date.now() - 3_600_000).toISOString(),
    ...extra,
  };
}

export class FakeTuiClient implements TuiClient {
  vms: VmView[] = [];
  imageList: Image[] = [];
  ops: PendingOp[] = [];
  listCalls = 0;
  subscribeCalls = 0;
  sshCalls: VmView[] = [];
  sshExitCode = 0;
  /** Runs while the ssh session would: tests look at the UI from here. */
  duringSsh: (() => Promise<void>) | null = null;
  consoles = new Map<string, string[]>();
  follows: { vmId: string; onData: (chunk: string) => void; signal: AbortSignal }[] = [];
  /** While set, subscribe() fails with this message (the daemon is down). */
  downWith: string | null = null;
  private handlers: SubscribeHandlers | null = null;

  get isSubscribed(): boolean {
    return this.handlers !== null;
  }

  async list(): Promise<VmView[]> {
    this.listCalls++;
    return this.vms.map((v) => ({ ...v }));
  }

  async get(vm: string): Promise<VmView> {
    const found = this.vms.find((v) => v.id === vm || v.name === vm);
    if (!found) throw new Error(`no VM ${vm}`);
    return found;
  }

  async images(): Promise<Image[]> {
    return this.imageList;
  }

  private pend(method: PendingOp['method'], vm: string | null, body: unknown, opId: string): Promise<never> {
    return new Promise((resolve, reject) => {
      this.ops.push({ method, vm, body, opId, resolve: resolve as (v: unknown) => void, reject });
    });
  }

  create(request: CreateRequest, opId: string): Promise<VmView> {
    return this.pend('create', null, request, opId);
  }
  start(vm: string, opId: string): Promise<VmView> {
    return this.pend('start', vm, {}, opId);
  }
  stop(vm: string, opId: string, opts: { force?: boolean } = {}): Promise<VmView> {
    return this.pend('stop', vm, opts, opId);
  }
  restart(vm: string, opId: string): Promise<VmView> {
    return this.pend('restart', vm, {}, opId);
  }
  delete(vm: string, opId: string, opts: { force?: boolean } = {}): Promise<unknown> {
    return this.pend('delete', vm, opts, opId);
  }

  async subscribe(handlers: SubscribeHandlers): Promise<Subscription> {
    this.subscribeCalls++;
    if (this.downWith) throw new Error(this.downWith);
    this.handlers = handlers;
    // The daemon greets every new stream.
    queueMicrotask(() => handlers.onEvent({ type: 'hello', at: new Date().toISOString() }));
    return {
      close: () => {
        if (this.handlers === handlers) this.handlers = null;
      },
    };
  }

  /** Sends an event on the open stream. */
  emit(event: TuiEvent): void {
    if (!this.handlers) throw new Error('no open event stream');
    this.handlers.onEvent(event);
  }

  /** Changes a VM and sends its vm.state event, as the daemon does. */
  setState(name: string, change: Partial<VmView>): VmView {
    const at = this.vms.findIndex((v) => v.name === name);
    this.vms[at] = { ...this.vms[at], ...change };
    this.emit({ type: 'vm.state', at: new Date().toISOString(), vm: this.vms[at] });
    return this.vms[at];
  }

  progress(op: PendingOp, phase: string, detail?: string, vmId: string | null = op.vm): void {
    this.emit({ type: 'progress', at: new Date().toISOString(), opId: op.opId, vmId, phase, elapsedMs: 0, detail });
  }

  /** The daemon goes away: the stream ends, and reconnecting fails until up() is called. */
  down(message = 'connect ECONNREFUSED /run/banger/bangerd.sock'): void {
    this.downWith = message;
    const h = this.handlers;
    this.handlers = null;
    h?.onClose(new Error('the event stream ended'));
  }

  up(): void {
    this.downWith = null;
  }

  async consoleTail(vmId: string, lines: number): Promise<string[]> {
    return (this.consoles.get(vmId) ?? []).slice(-lines);
  }

  async followConsole(vmId: string, onData: (chunk: string) => void, signal: AbortSignal): Promise<void> {
    this.follows.push({ vmId, onData, signal });
    const existing = this.consoles.get(vmId);
    if (existing?.length) onData(existing.join('\n') + '\n');
    await new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
  }

  async ssh(vm: VmView): Promise<number> {
    this.sshCalls.push(vm);
    await this.duringSsh?.();
    return this.sshExitCode;
  }
}
