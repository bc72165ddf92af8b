// The daemon's data as the TUI knows it: VMs, images and the health of the event stream.
// A (re)connect starts a sync: the list is fetched once, and the events that arrive while it is
// in flight are replayed over it, so that a change made during the fetch is never lost.
import type { Image, VmView } from '../../core/models.js';

export type Connection =
  | { status: 'connecting' }
  | { status: 'live' }
  | { status: 'reconnecting'; attempt: number; retryAt: number; error: string };

export type VmEvent = { type: 'vm.state'; vm: VmView } | { type: 'vm.deleted'; vmId: string };

export interface VmsState {
  vms: VmView[];
  images: Image[];
  /** False until the first list arrived. */
  isLoaded: boolean;
  connection: Connection;
  /** Events seen since the current fetch began; null when no fetch is in flight. */
  pending: VmEvent[] | null;
}

export type VmsAction =
  | { type: 'sync.begin' }
  | { type: 'sync.done'; vms: VmView[] }
  | { type: 'images.loaded'; images: Image[] }
  | VmEvent
  | { type: 'connection.lost'; attempt: number; retryAt: number; error: string };

export const initialVmsState: VmsState = { vms: [], images: [], isLoaded: false, connection: { status: 'connecting' }, pending: null };

/** Orders VMs by name, so that rows stay put while states change. */
function sortVms(vms: VmView[]): VmView[] {
  return [...vms].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/** One event applied to a list: a state replaces (or adds) the VM, a deletion drops it. */
export function applyVmEvent(vms: VmView[], event: VmEvent): VmView[] {
  if (event.type === 'vm.deleted') {
    return vms.some((v) => v.id === event.vmId) ? vms.filter((v) => v.id !== event.vmId) : vms;
  }
  const at = vms.findIndex((v) => v.id === event.vm.id);
  if (at < 0) return sortVms([...vms, event.vm]);
  const next = [...vms];
  next[at] = event.vm;
  // A rename is not possible today, but a changed name must not leave the list out of order.
  return vms[at].name === event.vm.name ? next : sortVms(next);
}

export function vmsReducer(state: VmsState, action: VmsAction): VmsState {
  switch (action.type) {
    case 'sync.begin':
      return { ...state, pending: [], connection: { status: 'live' } };
    case 'sync.done': {
      const replayed = (state.pending ?? []).reduce(applyVmEvent, sortVms(action.vms));
      return { ...state, vms: replayed, isLoaded: true, pending: null };
    }
    case 'images.loaded':
      return { ...state, images: [...action.images].sort((a, b) => (a.name < b.name ? -1 : 1)) };
    case 'vm.state':
    case 'vm.deleted':
      return {
        ...state,
        vms: applyVmEvent(state.vms, action),
        pending: state.pending ? [...state.pending, action] : null,
      };
    case 'connection.lost':
      return { ...state, pending: null, connection: { status: 'reconnecting', attempt: action.attempt, retryAt: action.retryAt, error: action.error } };
  }
}

/** Milliseconds to wait before reconnect attempt n (from 1): 250 ms doubling, at most maxMs. */
export function backoffMs(attempt: number, baseMs = 250, maxMs = 5000): number {
  return Math.min(maxMs, baseMs * 2 ** Math.max(0, attempt - 1));
}

/** The VMs whose name contains the filter, case-insensitively. */
export function filterVms(vms: VmView[], filter: string): VmView[] {
  const needle = filter.trim().toLowerCase();
  if (!needle) return vms;
  return vms.filter((v) => v.name.toLowerCase().includes(needle));
}
