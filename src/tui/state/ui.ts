// What the user is doing: the screen shown, the selection, the filter, the operations in flight
// with their progress, and the last message. Times come in actions, so the reducer stays pure.

export type Screen = 'table' | 'logs' | 'images' | 'create';
export type Overlay = null | { kind: 'help' } | { kind: 'confirm-delete'; vmId: string; name: string; isRunning: boolean };
export type OpKind = 'create' | 'start' | 'stop' | 'restart' | 'delete';

export interface Op {
  opId: string;
  kind: OpKind;
  /** The VM's name as the user knows it. */
  target: string;
  vmId: string | null;
  phase: string | null;
  detail: string | null;
  startedAt: number;
  endedAt: number | null;
  status: 'running' | 'done' | 'failed';
  error: string | null;
}

export interface Notice {
  tone: 'error' | 'info';
  text: string;
}

export interface UiState {
  screen: Screen;
  overlay: Overlay;
  selectedId: string | null;
  /** Row of the selection, kept so that deleting the selected VM selects its neighbour. */
  selectedIndex: number;
  filter: string;
  isFiltering: boolean;
  /** Operations, oldest first; finished ones are kept until dismissed or pushed out. */
  ops: Op[];
  notice: Notice | null;
  /** Set while an ssh session owns the terminal. */
  suspendedFor: string | null;
  logsVmId: string | null;
  imageIndex: number;
}

export type UiAction =
  | { type: 'screen'; screen: Screen; vmId?: string }
  | { type: 'overlay'; overlay: Overlay }
  | { type: 'select.move'; ids: string[]; delta: number }
  | { type: 'select.to'; ids: string[]; index: number }
  | { type: 'image.move'; count: number; delta: number }
  | { type: 'filter.begin' }
  | { type: 'filter.type'; text: string }
  | { type: 'filter.erase' }
  | { type: 'filter.end'; keep: boolean }
  | { type: 'op.begin'; opId: string; kind: OpKind; target: string; vmId: string | null; at: number }
  | { type: 'op.progress'; opId: string | null; vmId: string | null; phase: string; detail?: string }
  | { type: 'op.done'; opId: string; at: number; vmId?: string }
  | { type: 'op.failed'; opId: string; at: number; error: string }
  | { type: 'notice'; notice: Notice | null }
  | { type: 'dismiss' }
  | { type: 'suspend'; reason: string }
  | { type: 'resume' };

export const MAX_OPS = 20;

export const initialUiState: UiState = {
  screen: 'table',
  overlay: null,
  selectedId: null,
  selectedIndex: 0,
  filter: '',
  isFiltering: false,
  ops: [],
  notice: null,
  suspendedFor: null,
  logsVmId: null,
  imageIndex: 0,
};

/** The selected row among ids: the selected VM where it is, else the row it was on (clamped). */
export function selectedRow(ids: string[], ui: Pick<UiState, 'selectedId' | 'selectedIndex'>): number {
  if (ids.length === 0) return -1;
  const at = ui.selectedId === null ? -1 : ids.indexOf(ui.selectedId);
  if (at >= 0) return at;
  return Math.min(Math.max(ui.selectedIndex, 0), ids.length - 1);
}

function selectRow(state: UiState, ids: string[], index: number): UiState {
  if (ids.length === 0) return { ...state, selectedId: null, selectedIndex: 0 };
  const row = Math.min(Math.max(index, 0), ids.length - 1);
  return { ...state, selectedId: ids[row], selectedIndex: row };
}

function updateOp(state: UiState, opId: string | null, change: (op: Op) => Op): UiState {
  if (opId === null) return state;
  const at = state.ops.findIndex((o) => o.opId === opId);
  if (at < 0) return state;
  const ops = [...state.ops];
  ops[at] = change(ops[at]);
  return { ...state, ops };
}

export function uiReducer(state: UiState, action: UiAction): UiState {
  switch (action.type) {
    case 'screen':
      return {
        ...state,
        screen: action.screen,
        overlay: null,
        isFiltering: false,
        logsVmId: action.screen === 'logs' ? (action.vmId ?? state.logsVmId) : state.logsVmId,
      };
    case 'overlay':
      return { ...state, overlay: action.overlay };
    case 'select.move':
      return selectRow(state, action.ids, selectedRow(action.ids, state) + action.delta);
    case 'select.to':
      return selectRow(state, action.ids, action.index < 0 ? action.ids.length + action.index : action.index);
    case 'image.move':
      return { ...state, imageIndex: Math.min(Math.max(state.imageIndex + action.delta, 0), Math.max(action.count - 1, 0)) };
    case 'filter.begin':
      return { ...state, isFiltering: true };
    case 'filter.type':
      return { ...state, filter: state.filter + action.text.replace(/[\x00-\x1f\x7f]/g, '') };
    case 'filter.erase':
      return { ...state, filter: [...state.filter].slice(0, -1).join('') };
    case 'filter.end':
      return { ...state, isFiltering: false, filter: action.keep ? state.filter : '' };
    case 'op.begin': {
      const op: Op = {
        opId: action.opId,
        kind: action.kind,
        target: action.target,
        vmId: action.vmId,
        phase: null,
        detail: null,
        startedAt: action.at,
        endedAt: null,
        status: 'running',
        error: null,
      };
      return { ...state, notice: null, ops: [...state.ops, op].slice(-MAX_OPS) };
    }
    case 'op.progress': {
      const before = state.ops.find((o) => o.opId === action.opId);
      const next = updateOp(state, action.opId, (op) => ({ ...op, phase: action.phase, detail: action.detail ?? null, vmId: op.vmId ?? action.vmId }));
      // A new VM gets selected as soon as the daemon names it.
      const isNamedNow = before?.kind === 'create' && before.vmId === null && action.vmId !== null;
      return isNamedNow ? { ...next, selectedId: action.vmId } : next;
    }
    case 'op.done': {
      const next = updateOp(state, action.opId, (op) => ({ ...op, status: 'done', endedAt: action.at, vmId: op.vmId ?? action.vmId ?? null }));
      const op = next.ops.find((o) => o.opId === action.opId);
      if (op?.kind === 'create' && op.vmId) return { ...next, selectedId: op.vmId };
      return next;
    }
    case 'op.failed':
      return updateOp(state, action.opId, (op) => ({ ...op, status: 'failed', endedAt: action.at, error: action.error }));
    case 'notice':
      return { ...state, notice: action.notice };
    case 'dismiss':
      return { ...state, notice: null, ops: state.ops.filter((o) => o.status === 'running') };
    case 'suspend':
      return { ...state, suspendedFor: action.reason };
    case 'resume':
      return { ...state, suspendedFor: null };
  }
}

const VERBS: Record<OpKind, [string, string]> = {
  create: ['creating', 'created'],
  start: ['starting', 'started'],
  stop: ['stopping', 'stopped'],
  restart: ['restarting', 'restarted'],
  delete: ['deleting', 'deleted'],
};

export interface StatusLine {
  tone: 'progress' | 'error' | 'ok' | 'info';
  text: string;
}

function seconds(ms: number): string {
  return `${(Math.max(0, ms) / 1000).toFixed(1)}s`;
}

/**
 * The status area: the newest running operation with its phase and elapsed time, then the
 * newest outcome (an error stays until dismissed or replaced).
 */
export function statusLines(ui: Pick<UiState, 'ops' | 'notice'>, now: number): StatusLine[] {
  const lines: StatusLine[] = [];
  const running = ui.ops.filter((o) => o.status === 'running');
  const newest = running[running.length - 1];
  if (newest) {
    const phase = newest.phase ? `: ${newest.phase}${newest.detail ? ` (${newest.detail})` : ''}` : ': waiting for the daemon';
    const more = running.length > 1 ? ` (+${running.length - 1} more)` : '';
    lines.push({ tone: 'progress', text: `${VERBS[newest.kind][0]} ${newest.target}${phase} ${seconds(now - newest.startedAt)}${more}` });
  }
  if (ui.notice) {
    lines.push({ tone: ui.notice.tone, text: ui.notice.text });
    return lines;
  }
  const finished = ui.ops.filter((o) => o.status !== 'running');
  const last = finished[finished.length - 1];
  if (last) {
    const took = seconds((last.endedAt ?? now) - last.startedAt);
    if (last.status === 'failed') lines.push({ tone: 'error', text: `${VERBS[last.kind][0]} ${last.target} failed after ${took}: ${last.error}` });
    else lines.push({ tone: 'ok', text: `${VERBS[last.kind][1]} ${last.target} in ${took}` });
  }
  return lines;
}

/** True while some operation on vmId runs (its row gets a busy mark). */
export function isBusy(ui: Pick<UiState, 'ops'>, vmId: string): boolean {
  return ui.ops.some((o) => o.status === 'running' && o.vmId === vmId);
}
