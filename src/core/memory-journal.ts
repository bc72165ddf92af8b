// An in-memory Journal for unit tests and for code that runs outside the daemon.
import type { Journal, ResourceKind, ResourceRecord } from './ports.js';

export class MemoryJournal implements Journal {
  private rows: ResourceRecord[] = [];
  record(vmId: string, kind: ResourceKind, handle: string, detail = ''): void {
    if (this.rows.some((r) => r.vmId === vmId && r.kind === kind && r.handle === handle)) return;
    this.rows.push({ vmId, kind, handle, detail, recordedAt: new Date().toISOString() });
  }
  forget(vmId: string, kind: ResourceKind, handle: string): void {
    this.rows = this.rows.filter((r) => !(r.vmId === vmId && r.kind === kind && r.handle === handle));
  }
  list(vmId: string): ResourceRecord[] {
    return this.rows.filter((r) => r.vmId === vmId);
  }
  listAll(): ResourceRecord[] {
    return [...this.rows];
  }
}
