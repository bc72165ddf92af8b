// The daemon's event bus, streamed to clients as NDJSON on GET /v1/events.
import type { VmView } from '../core/models.js';

export type DaemonEvent =
  | { type: 'vm.state'; at: string; vm: VmView }
  | { type: 'vm.deleted'; at: string; vmId: string; name: string }
  | { type: 'image.changed'; at: string }
  | { type: 'progress'; at: string; opId: string | null; vmId: string | null; phase: string; elapsedMs: number; detail?: string };

type Listener = (e: DaemonEvent) => void;

export class EventBus {
  private listeners = new Set<Listener>();
  subscribe(l: Listener): () => void {
    this.listeners.add(l);
    return () => this.listeners.delete(l);
  }
  emit(e: DaemonEvent): void {
    for (const l of this.listeners) {
      try {
        l(e);
      } catch {
        // a broken listener must not break the operation that emitted
      }
    }
  }
}
