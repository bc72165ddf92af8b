// The logs screen: the console's lines as they arrive (a bounded buffer) and the scroll position.

export const MAX_LOG_LINES = 5000;

export interface LogsState {
  vmId: string | null;
  lines: string[];
  /** The last line while it has no newline yet. */
  partial: string;
  /** Lines scrolled up from the bottom; 0 follows new output. */
  scroll: number;
  error: string | null;
}

export type LogsAction =
  | { type: 'open'; vmId: string }
  | { type: 'append'; chunk: string }
  | { type: 'scroll'; delta: number; page: number }
  | { type: 'follow' }
  | { type: 'failed'; error: string };

export const initialLogsState: LogsState = { vmId: null, lines: [], partial: '', scroll: 0, error: null };

/** Drops what a terminal cannot show as text: escape sequences and control characters but tab. */
export function cleanLine(line: string): string {
  return line
    .replace(/\x1b\[[0-9;?]*[ -/]*[@-~]/g, '')
    .replace(/\x1b[@-_]/g, '')
    .replace(/\t/g, '  ')
    .replace(/[\x00-\x1f\x7f]/g, '');
}

/** The buffer's lines plus the unfinished one. */
export function allLines(state: LogsState): string[] {
  return state.partial ? [...state.lines, state.partial] : state.lines;
}

export function logsReducer(state: LogsState, action: LogsAction): LogsState {
  switch (action.type) {
    case 'open':
      return { ...initialLogsState, vmId: action.vmId };
    case 'append': {
      const pieces = (state.partial + action.chunk).split('\n');
      const partial = pieces.pop() ?? '';
      const added = pieces.map((l) => cleanLine(l.endsWith('\r') ? l.slice(0, -1) : l));
      const lines = [...state.lines, ...added].slice(-MAX_LOG_LINES);
      // Scrolled up, the view stays on the same lines while new ones arrive below.
      const scroll = state.scroll === 0 ? 0 : Math.min(state.scroll + added.length, Math.max(lines.length - 1, 0));
      return { ...state, lines, partial: cleanLine(partial), scroll };
    }
    case 'scroll': {
      const max = Math.max(allLines(state).length - action.page, 0);
      return { ...state, scroll: Math.min(Math.max(state.scroll + action.delta, 0), max) };
    }
    case 'follow':
      return { ...state, scroll: 0 };
    case 'failed':
      return { ...state, error: action.error };
  }
}

/** The page of lines to show in `height` rows. */
export function visibleLogLines(state: LogsState, height: number): string[] {
  const lines = allLines(state);
  const end = Math.max(lines.length - state.scroll, 0);
  return lines.slice(Math.max(end - height, 0), end);
}
