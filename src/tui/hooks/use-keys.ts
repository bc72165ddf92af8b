// Keys: one input listener for the app, and one handler per screen or overlay that the App
// routes each key to.
import { useInput, type Key } from 'ink';
import { useCallback, useLayoutEffect, useState, type Dispatch } from 'react';
import type { VmView } from '../../core/models.js';
import type { Actions } from './use-actions.js';
import type { UiAction } from '../state/ui.js';
import type { FormAction, FormState } from '../state/form.js';
import type { LogsAction } from '../state/logs.js';

export type KeyHandler = (input: string, key: Key) => void;

/**
 * Listens to keys while active. Keys are queued and handled one per render, each by the handler
 * of the render that the previous key produced: a key typed before the frame of the one before
 * it (a fast typist, a terminal that sends "jjd" at once) still acts on the right VM and screen.
 */
export function useKeys(isActive: boolean, handler: KeyHandler): void {
  const [queue, setQueue] = useState<{ input: string; key: Key }[]>([]);
  const enqueue = useCallback<KeyHandler>((input, key) => setQueue((q) => [...q, { input, key }]), []);
  useInput(enqueue, { isActive });
  useLayoutEffect(() => {
    if (queue.length === 0) return;
    const [first, ...rest] = queue;
    setQueue(rest);
    handler(first.input, first.key);
  }, [queue]);
}

/** True for a key that types text (no control, meta or navigation key). */
function isTyping(input: string, key: Key): boolean {
  return input.length > 0 && !key.ctrl && !key.meta && !key.return && !key.tab && !key.escape && !key.backspace && !key.delete;
}

export interface TableKeys {
  ids: string[];
  selected: VmView | null;
  /** Rows that one page up/down moves. */
  page: number;
  hasFilter: boolean;
  dispatch: Dispatch<UiAction>;
  actions: Actions;
  openCreate: () => void;
  quit: () => void;
}

export function handleTableKey(k: TableKeys, input: string, key: Key): void {
  const move = (delta: number) => k.dispatch({ type: 'select.move', ids: k.ids, delta });
  if (key.upArrow || input === 'k') return move(-1);
  if (key.downArrow || input === 'j') return move(1);
  if (key.pageUp) return move(-k.page);
  if (key.pageDown) return move(k.page);
  if (key.home || input === 'g') return k.dispatch({ type: 'select.to', ids: k.ids, index: 0 });
  if (key.end || input === 'G') return k.dispatch({ type: 'select.to', ids: k.ids, index: -1 });
  if (key.escape) {
    if (k.hasFilter) k.dispatch({ type: 'filter.end', keep: false });
    return k.dispatch({ type: 'dismiss' });
  }
  switch (input) {
    case 'q':
      return k.quit();
    case '?':
      return k.dispatch({ type: 'overlay', overlay: { kind: 'help' } });
    case '/':
      return k.dispatch({ type: 'filter.begin' });
    case 'n':
      return k.openCreate();
    case 'i':
      return k.dispatch({ type: 'screen', screen: 'images' });
  }
  const vmKeys = ['s', 'x', 'X', 'r', 'd', 'e', 'l'];
  if (!vmKeys.includes(input)) return;
  const vm = k.selected;
  if (!vm) return k.dispatch({ type: 'notice', notice: { tone: 'error', text: 'no VM selected: create one with n' } });
  switch (input) {
    case 's':
      return k.actions.start(vm);
    case 'x':
      return k.actions.stop(vm);
    case 'X':
      return k.actions.stop(vm, true);
    case 'r':
      return k.actions.restart(vm);
    case 'd':
      return k.dispatch({
        type: 'overlay',
        overlay: { kind: 'confirm-delete', vmId: vm.id, name: vm.name, isRunning: vm.state !== 'stopped' && vm.state !== 'error' },
      });
    case 'e':
      return void k.actions.ssh(vm);
    case 'l':
      return k.dispatch({ type: 'screen', screen: 'logs', vmId: vm.id });
  }
}

export function handleFilterKey(ids: string[], dispatch: Dispatch<UiAction>, input: string, key: Key): void {
  if (key.return) return dispatch({ type: 'filter.end', keep: true });
  if (key.escape) return dispatch({ type: 'filter.end', keep: false });
  if (key.upArrow) return dispatch({ type: 'select.move', ids, delta: -1 });
  if (key.downArrow) return dispatch({ type: 'select.move', ids, delta: 1 });
  if (key.backspace || key.delete) return dispatch({ type: 'filter.erase' });
  if (isTyping(input, key)) dispatch({ type: 'filter.type', text: input });
}

export function handleConfirmKey(vm: VmView | null, dispatch: Dispatch<UiAction>, actions: Actions, input: string, key: Key): void {
  if (input === 'y' || input === 'Y') {
    dispatch({ type: 'overlay', overlay: null });
    if (vm) actions.remove(vm);
    return;
  }
  if (input === 'n' || input === 'N' || input === 'q' || key.escape) dispatch({ type: 'overlay', overlay: null });
}

export function handleHelpKey(dispatch: Dispatch<UiAction>): void {
  dispatch({ type: 'overlay', overlay: null });
}

export function handleLogsKey(page: number, dispatch: Dispatch<UiAction>, logs: Dispatch<LogsAction>, input: string, key: Key): void {
  if (key.escape || input === 'q') return dispatch({ type: 'screen', screen: 'table' });
  if (key.upArrow || input === 'k') return logs({ type: 'scroll', delta: 1, page });
  if (key.downArrow || input === 'j') return logs({ type: 'scroll', delta: -1, page });
  if (key.pageUp) return logs({ type: 'scroll', delta: page, page });
  if (key.pageDown) return logs({ type: 'scroll', delta: -page, page });
  if (key.home || input === 'g') return logs({ type: 'scroll', delta: Number.MAX_SAFE_INTEGER, page });
  if (key.end || input === 'G' || input === 'f') return logs({ type: 'follow' });
  if (input === '?') return dispatch({ type: 'overlay', overlay: { kind: 'help' } });
}

export function handleImagesKey(count: number, dispatch: Dispatch<UiAction>, openCreate: () => void, input: string, key: Key): void {
  if (key.escape || input === 'q') return dispatch({ type: 'screen', screen: 'table' });
  if (key.upArrow || input === 'k') return dispatch({ type: 'image.move', count, delta: -1 });
  if (key.downArrow || input === 'j') return dispatch({ type: 'image.move', count, delta: 1 });
  if (input === 'n' || key.return) return openCreate();
  if (input === '?') return dispatch({ type: 'overlay', overlay: { kind: 'help' } });
}

export interface FormKeys {
  form: FormState;
  imageCount: number;
  dispatch: Dispatch<FormAction>;
  submit: () => void;
  cancel: () => void;
}

export function handleFormKey(k: FormKeys, input: string, key: Key): void {
  const f = k.form.focus;
  if (key.escape) return k.cancel();
  if (key.return) return k.submit();
  if (key.tab) return k.dispatch({ type: 'focus.move', delta: key.shift ? -1 : 1 });
  if (key.upArrow) return k.dispatch({ type: 'focus.move', delta: -1 });
  if (key.downArrow) return k.dispatch({ type: 'focus.move', delta: 1 });
  if (f === 'image' && (key.leftArrow || key.rightArrow || input === ' ')) {
    return k.dispatch({ type: 'image.move', delta: key.leftArrow ? -1 : 1, count: k.imageCount });
  }
  if ((f === 'nat' || f === 'start') && (key.leftArrow || key.rightArrow || input === ' ')) return k.dispatch({ type: 'toggle' });
  if (key.backspace || key.delete) return k.dispatch({ type: 'erase' });
  if (isTyping(input, key)) k.dispatch({ type: 'type', text: input });
}
