// Renders the TUI against a FakeTuiClient with ink-testing-library; waits on frames, not sleeps.
import { createElement } from 'react';
import { render } from 'ink-testing-library';
import { App } from '../../src/tui/app.js';
import { COLOR_THEME, type Theme } from '../../src/tui/theme.js';
import type { FakeTuiClient } from './fake-client.js';

export const KEY = {
  up: '\x1b[A',
  down: '\x1b[B',
  right: '\x1b[C',
  left: '\x1b[D',
  enter: '\r',
  escape: '\x1b',
  tab: '\t',
  shiftTab: '\x1b[Z',
  backspace: '\x7f',
} as const;

export interface Rendered {
  lastFrame(): string;
  /** Types keys one write at a time, letting Ink handle each. */
  press(...keys: string[]): Promise<void>;
  /** Writes keys back to back in one tick, as a fast typist or a paste-happy terminal would. */
  type(...keys: string[]): void;
  waitForFrame(predicate: (frame: string) => boolean, what?: string, timeoutMs?: number): Promise<string>;
  waitFor<T>(fn: () => T | undefined | null | false, what: string, timeoutMs?: number): Promise<T>;
  resize(columns: number, rows: number): void;
  /** Whether Ink has the terminal in raw mode, i.e. takes keys. */
  isRaw(): boolean;
  unmount(): void;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export function renderApp(client: FakeTuiClient, opts: { theme?: Theme; columns?: number; rows?: number } = {}): Rendered {
  const r = render(createElement(App, { client, theme: opts.theme ?? COLOR_THEME, sync: { retryBaseMs: 20, retryMaxMs: 100 } }));
  const stdout = r.stdout as unknown as NodeJS.EventEmitter & { columns: number; rows: number };
  const resize = (columns: number, rows: number) => {
    Object.defineProperty(stdout, 'columns', { value: columns, configurable: true });
    Object.defineProperty(stdout, 'rows', { value: rows, configurable: true });
    stdout.emit('resize');
  };
  if (opts.columns || opts.rows) resize(opts.columns ?? 100, opts.rows ?? 24);
  let isRaw = false;
  (r.stdin as unknown as { setRawMode: (on: boolean) => void }).setRawMode = (on) => {
    isRaw = on;
  };
  const lastFrame = () => r.lastFrame() ?? '';
  const waitFor = async <T>(fn: () => T | undefined | null | false, what: string, timeoutMs = 3000): Promise<T> => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const v = fn();
      if (v) return v;
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; last frame:\n${lastFrame()}`);
      await sleep(10);
    }
  };
  return {
    lastFrame,
    press: async (...keys) => {
      for (const k of keys) {
        r.stdin.write(k);
        // Ink reads a lone ESC after a tick (it may start a sequence); let it, and React, settle.
        await sleep(k === KEY.escape ? 20 : 5);
      }
    },
    type: (...keys) => {
      for (const k of keys) r.stdin.write(k);
    },
    waitForFrame: (predicate, what = 'a frame', timeoutMs) => waitFor(() => (predicate(lastFrame()) ? lastFrame() : null), what, timeoutMs),
    waitFor,
    resize,
    isRaw: () => isRaw,
    unmount: () => r.unmount(),
  };
}
