// The TUI's reducers and pure helpers, without rendering.
import { describe, it, expect } from 'vitest';
import { applyVmEvent, backoffMs, filterVms, initialVmsState, vmsReducer, type VmsAction, type VmsState } from '../../src/tui/state/vms.js';
import { initialUiState, isBusy, selectedRow, statusLines, uiReducer, type UiAction, type UiState } from '../../src/tui/state/ui.js';
import { checkForm, formReducer, initialFormState, visibleErrors, type FormAction, type FormState } from '../../src/tui/state/form.js';
import { initialLogsState, logsReducer, visibleLogLines, MAX_LOG_LINES, cleanLine } from '../../src/tui/state/logs.js';
import { columnWidths, fit, vmCells } from '../../src/tui/format.js';
import { themeFor, COLOR_THEME, NO_COLOR_THEME } from '../../src/tui/theme.js';
import { windowStart } from '../../src/tui/components/vm-table.js';
import { hintLine } from '../../src/tui/components/status-bar.js';
import { makeImage, makeVm } from './fake-client.js';

const vmsAfter = (actions: VmsAction[], from: VmsState = initialVmsState) => actions.reduce(vmsReducer, from);
const uiAfter = (actions: UiAction[], from: UiState = initialUiState) => actions.reduce(uiReducer, from);
const formAfter = (actions: FormAction[], from: FormState = initialFormState) => actions.reduce(formReducer, from);

describe('vms reducer', () => {
  const dev = makeVm('dev');
  const web = makeVm('web');
  const db = makeVm('db');

  it('orders the list by name and marks it loaded when a sync completes', () => {
    const s = vmsAfter([{ type: 'sync.begin' }, { type: 'sync.done', vms: [web, dev, db] }]);
    expect(s.vms.map((v) => v.name)).toEqual(['db', 'dev', 'web']);
    expect(s.isLoaded).toBe(true);
    expect(s.connection).toEqual({ status: 'live' });
    expect(s.pending).toBeNull();
  });

  it('replaces a VM on vm.state, adds an unknown one, and drops one on vm.deleted', () => {
    let s = vmsAfter([{ type: 'sync.begin' }, { type: 'sync.done', vms: [dev, web] }]);
    s = vmsReducer(s, { type: 'vm.state', vm: { ...dev, state: 'running', pid: 42 } });
    expect(s.vms.find((v) => v.id === dev.id)).toMatchObject({ state: 'running', pid: 42 });
    s = vmsReducer(s, { type: 'vm.state', vm: db });
    expect(s.vms.map((v) => v.name)).toEqual(['db', 'dev', 'web']);
    s = vmsReducer(s, { type: 'vm.deleted', vmId: web.id });
    expect(s.vms.map((v) => v.name)).toEqual(['db', 'dev']);
  });

  it('replays the events that arrived during a fetch over the fetched list', () => {
    // The list was computed before dev started and web was deleted; both events came first.
    const s = vmsAfter([
      { type: 'sync.begin' },
      { type: 'vm.state', vm: { ...dev, state: 'running' } },
      { type: 'vm.deleted', vmId: web.id },
      { type: 'sync.done', vms: [dev, web] },
    ]);
    expect(s.vms).toHaveLength(1);
    expect(s.vms[0]).toMatchObject({ name: 'dev', state: 'running' });
  });

  it('does not replay events from before the fetch began', () => {
    let s = vmsAfter([{ type: 'sync.begin' }, { type: 'sync.done', vms: [dev] }]);
    s = vmsReducer(s, { type: 'vm.state', vm: { ...dev, state: 'running' } });
    // A reconnect: the new list says stopped, and nothing arrived since.
    s = vmsAfter([{ type: 'sync.begin' }, { type: 'sync.done', vms: [dev] }], s);
    expect(s.vms[0].state).toBe('stopped');
  });

  it('keeps the VMs it knows while reconnecting, and reports attempt and error', () => {
    let s = vmsAfter([{ type: 'sync.begin' }, { type: 'sync.done', vms: [dev] }]);
    s = vmsReducer(s, { type: 'connection.lost', attempt: 2, retryAt: 1000, error: 'ECONNREFUSED' });
    expect(s.connection).toEqual({ status: 'reconnecting', attempt: 2, retryAt: 1000, error: 'ECONNREFUSED' });
    expect(s.vms).toHaveLength(1);
  });

  it('applyVmEvent returns the same list when a deleted VM was not there', () => {
    const list = [dev];
    expect(applyVmEvent(list, { type: 'vm.deleted', vmId: 'ffffffffffff' })).toBe(list);
  });

  it('backs off 250 ms doubling up to 5 s', () => {
    expect([1, 2, 3, 4, 5, 6, 7, 20].map((n) => backoffMs(n))).toEqual([250, 500, 1000, 2000, 4000, 5000, 5000, 5000]);
  });

  it('filters by name, case-insensitively, by substring', () => {
    expect(filterVms([dev, web, db], 'E').map((v) => v.name)).toEqual(['dev', 'web']);
    expect(filterVms([dev, web, db], '  ')).toHaveLength(3);
    expect(filterVms([dev, web, db], 'zzz')).toEqual([]);
  });
});

describe('ui reducer', () => {
  const ids = ['a', 'b', 'c', 'd'];

  it('moves the selection within bounds', () => {
    expect(uiAfter([{ type: 'select.move', ids, delta: 1 }]).selectedId).toBe('b');
    expect(uiAfter([{ type: 'select.move', ids, delta: -5 }]).selectedId).toBe('a');
    expect(uiAfter([{ type: 'select.move', ids, delta: 99 }]).selectedId).toBe('d');
    expect(uiAfter([{ type: 'select.to', ids, index: -1 }]).selectedId).toBe('d');
  });

  it('selects the neighbour row when the selected VM disappears', () => {
    const s = uiAfter([{ type: 'select.to', ids, index: 2 }]);
    expect(selectedRow(['a', 'b', 'd'], s)).toBe(2);
    expect(selectedRow(['a', 'b'], s)).toBe(1);
    expect(selectedRow([], s)).toBe(-1);
    // The selected VM moving to another row is followed.
    expect(selectedRow(['c', 'a'], s)).toBe(0);
  });

  it('tracks an operation from begin through progress to done, with elapsed time', () => {
    let s = uiAfter([{ type: 'op.begin', opId: 'op1', kind: 'start', target: 'dev', vmId: 'a', at: 1000 }]);
    expect(statusLines(s, 1500)).toEqual([{ tone: 'progress', text: 'starting dev: waiting for the daemon 0.5s' }]);
    s = uiReducer(s, { type: 'op.progress', opId: 'op1', vmId: 'a', phase: 'vmm.spawn', detail: 'pid 42' });
    expect(statusLines(s, 3250)).toEqual([{ tone: 'progress', text: 'starting dev: vmm.spawn (pid 42) 2.3s' }]);
    expect(isBusy(s, 'a')).toBe(true);
    s = uiReducer(s, { type: 'op.done', opId: 'op1', at: 4000 });
    expect(statusLines(s, 9000)).toEqual([{ tone: 'ok', text: 'started dev in 3.0s' }]);
    expect(isBusy(s, 'a')).toBe(false);
  });

  it('ignores progress of operations it did not start', () => {
    const s = uiAfter([{ type: 'op.begin', opId: 'mine', kind: 'stop', target: 'dev', vmId: 'a', at: 0 }]);
    expect(uiReducer(s, { type: 'op.progress', opId: 'other', vmId: 'a', phase: 'x' })).toBe(s);
    expect(uiReducer(s, { type: 'op.progress', opId: null, vmId: 'a', phase: 'x' })).toBe(s);
  });

  it('keeps a failure with its message until dismissed, and shows a running op above it', () => {
    let s = uiAfter([
      { type: 'op.begin', opId: 'op1', kind: 'start', target: 'dev', vmId: 'a', at: 0 },
      { type: 'op.failed', opId: 'op1', at: 1200, error: 'kvm is not available' },
      { type: 'op.begin', opId: 'op2', kind: 'stop', target: 'web', vmId: 'b', at: 5000 },
    ]);
    expect(statusLines(s, 6000)).toEqual([
      { tone: 'progress', text: 'stopping web: waiting for the daemon 1.0s' },
      { tone: 'error', text: 'starting dev failed after 1.2s: kvm is not available' },
    ]);
    s = uiReducer(s, { type: 'dismiss' });
    expect(statusLines(s, 6000)).toEqual([{ tone: 'progress', text: 'stopping web: waiting for the daemon 1.0s' }]);
  });

  it('counts other running operations', () => {
    const s = uiAfter([
      { type: 'op.begin', opId: '1', kind: 'start', target: 'a', vmId: 'a', at: 0 },
      { type: 'op.begin', opId: '2', kind: 'start', target: 'b', vmId: 'b', at: 0 },
    ]);
    expect(statusLines(s, 0)[0].text).toBe('starting b: waiting for the daemon 0.0s (+1 more)');
  });

  it('selects a new VM when the create names it, and again when it is done', () => {
    let s = uiAfter([{ type: 'op.begin', opId: 'c', kind: 'create', target: 'new', vmId: null, at: 0 }]);
    s = uiReducer(s, { type: 'op.progress', opId: 'c', vmId: 'fresh', phase: 'disk.copy' });
    expect(s.selectedId).toBe('fresh');
    s = uiReducer(s, { type: 'select.move', ids: ['fresh', 'z'], delta: 1 });
    // Further progress leaves the user's selection alone.
    s = uiReducer(s, { type: 'op.progress', opId: 'c', vmId: 'fresh', phase: 'vmm.start' });
    expect(s.selectedId).toBe('z');
  });

  it('keeps at most MAX_OPS operations', () => {
    const actions: UiAction[] = Array.from({ length: 30 }, (_, i) => ({ type: 'op.begin', opId: `o${i}`, kind: 'start', target: 't', vmId: null, at: 0 }));
    const s = uiAfter(actions);
    expect(s.ops).toHaveLength(20);
    expect(s.ops[0].opId).toBe('o10');
  });

  it('a new operation clears the last notice', () => {
    const s = uiAfter([
      { type: 'notice', notice: { tone: 'error', text: 'ssh failed' } },
      { type: 'op.begin', opId: 'x', kind: 'start', target: 'dev', vmId: 'a', at: 0 },
    ]);
    expect(s.notice).toBeNull();
  });

  it('filter: Esc clears it, Enter keeps it', () => {
    const typed = uiAfter([{ type: 'filter.begin' }, { type: 'filter.type', text: 'wx' }, { type: 'filter.erase' }, { type: 'filter.type', text: 'e\x07' }]);
    expect(typed.isFiltering).toBe(true);
    expect(uiReducer(typed, { type: 'filter.end', keep: true })).toMatchObject({ isFiltering: false, filter: 'we' });
    expect(uiReducer(typed, { type: 'filter.end', keep: false })).toMatchObject({ isFiltering: false, filter: '' });
  });

  it('opening a screen closes overlays and remembers which VM the logs are for', () => {
    const s = uiAfter([{ type: 'overlay', overlay: { kind: 'help' } }, { type: 'screen', screen: 'logs', vmId: 'a' }]);
    expect(s).toMatchObject({ screen: 'logs', overlay: null, logsVmId: 'a' });
  });
});

describe('create form', () => {
  const images = [makeImage('debian', { rootfsSizeBytes: 2 ** 30 }), makeImage('alpine', { rootfsSizeBytes: 2 ** 28 })];
  const typeInto = (field: number, text: string): FormAction[] => [
    ...Array.from({ length: field }, () => ({ type: 'focus.move', delta: 1 }) as FormAction),
    { type: 'type', text },
  ];

  it('answers the request of the defaults: the first image, 1 vCPU, 512 MiB, NAT, started', () => {
    expect(checkForm(initialFormState, images, [])).toEqual({
      errors: {},
      request: { image: images[0].id, vcpus: 1, memoryMib: 512, nat: true, start: true },
    });
  });

  it('parses the disk size with binary units', () => {
    const s = formAfter(typeInto(4, '1.5G'));
    expect(checkForm(s, images, []).request?.diskSizeBytes).toBe(1.5 * 2 ** 30);
  });

  it('refuses names outside the pattern and names in use', () => {
    expect(checkForm(formAfter(typeInto(0, 'Dev_1')), images, []).errors.name).toMatch(/a-z, 0-9 and dashes/);
    expect(checkForm(formAfter(typeInto(0, '-dev')), images, []).errors.name).toMatch(/starting with a letter or digit/);
    expect(checkForm(formAfter(typeInto(0, 'a'.repeat(64))), images, []).errors.name).toBeDefined();
    expect(checkForm(formAfter(typeInto(0, 'dev')), images, [makeVm('dev')]).errors.name).toBe('a VM named "dev" already exists');
    expect(checkForm(formAfter(typeInto(0, 'a'.repeat(63))), images, []).errors.name).toBeUndefined();
  });

  it('checks vCPUs and memory against the limits', () => {
    const vcpus = (t: string) => checkForm(formAfter([...typeInto(2, ''), { type: 'erase' }, { type: 'type', text: t }]), images, []).errors.vcpus;
    expect(vcpus('0')).toBe('a whole number from 1 to 32');
    expect(vcpus('33')).toBe('a whole number from 1 to 32');
    expect(vcpus('2.5')).toBeDefined();
    expect(vcpus('32')).toBeUndefined();
    const memory = (t: string) =>
      checkForm(formAfter([...typeInto(3, ''), { type: 'erase' }, { type: 'erase' }, { type: 'erase' }, { type: 'type', text: t }]), images, []).errors.memory;
    expect(memory('63')).toBe('MiB, a whole number from 64 to 262144');
    expect(memory('64')).toBeUndefined();
    expect(memory('262145')).toBeDefined();
  });

  it("refuses a disk smaller than the chosen image's rootfs, or not a size", () => {
    expect(checkForm(formAfter(typeInto(4, '512M')), images, []).errors.disk).toBe("at least the image's size, 1 GiB");
    // alpine is 256 MiB: the same size is fine there.
    const onAlpine = formAfter([...typeInto(4, '512M'), { type: 'image.move', delta: 1, count: 2 }]);
    expect(checkForm(onAlpine, images, []).errors.disk).toBeUndefined();
    expect(checkForm(formAfter(typeInto(4, 'lots')), images, []).errors.disk).toBe('a size like 4G, 512M or 100K (binary units)');
    expect(checkForm(formAfter(typeInto(4, '0')), images, []).errors.disk).toBe('must be larger than 0');
  });

  it('needs an image', () => {
    const check = checkForm(initialFormState, [], []);
    expect(check.request).toBeNull();
    expect(check.errors.image).toMatch(/banger image add/);
  });

  it('shows errors of touched fields at once and of all fields after a submit attempt', () => {
    const s = formAfter(typeInto(0, 'BAD'));
    const check = checkForm(s, [], []);
    expect(Object.keys(visibleErrors(s, check))).toEqual(['name']);
    expect(Object.keys(visibleErrors(formReducer(s, { type: 'submit.attempt' }), check)).sort()).toEqual(['image', 'name']);
  });

  it('types only into text fields, keeps printable characters, and toggles only toggles', () => {
    let s = formAfter([{ type: 'type', text: 'a\x1bb\tc' }]);
    expect(s.text.name).toBe('abc');
    s = formAfter([{ type: 'focus.move', delta: 1 }, { type: 'type', text: 'x' }, { type: 'toggle' }]);
    expect(s).toEqual({ ...initialFormState, focus: 'image' });
    s = formAfter([{ type: 'focus.move', delta: -2 }, { type: 'toggle' }]);
    expect(s.focus).toBe('nat');
    expect(s.toggles.nat).toBe(false);
  });

  it('cycles images both ways', () => {
    expect(formAfter([{ type: 'image.move', delta: -1, count: 3 }]).imageIndex).toBe(2);
    expect(formAfter([{ type: 'image.move', delta: 4, count: 3 }]).imageIndex).toBe(1);
    expect(formAfter([{ type: 'image.move', delta: 1, count: 0 }]).imageIndex).toBe(0);
  });
});

describe('logs reducer', () => {
  it('splits chunks into lines, keeping an unfinished last line apart', () => {
    let s = logsReducer(initialLogsState, { type: 'open', vmId: 'a' });
    s = logsReducer(s, { type: 'append', chunk: 'one\r\ntw' });
    s = logsReducer(s, { type: 'append', chunk: 'o\nthree' });
    expect(s.lines).toEqual(['one', 'two']);
    expect(s.partial).toBe('three');
    expect(visibleLogLines(s, 2)).toEqual(['two', 'three']);
  });

  it('keeps the newest MAX_LOG_LINES lines', () => {
    const chunk = Array.from({ length: MAX_LOG_LINES + 10 }, (_, i) => `l${i}`).join('\n') + '\n';
    const s = logsReducer(initialLogsState, { type: 'append', chunk });
    expect(s.lines).toHaveLength(MAX_LOG_LINES);
    expect(s.lines[0]).toBe('l10');
  });

  it('stays on the same lines when scrolled up while output arrives, and follows again on demand', () => {
    let s = logsReducer(initialLogsState, { type: 'append', chunk: 'a\nb\nc\nd\n' });
    s = logsReducer(s, { type: 'scroll', delta: 1, page: 2 });
    expect(visibleLogLines(s, 2)).toEqual(['b', 'c']);
    s = logsReducer(s, { type: 'append', chunk: 'e\nf\n' });
    expect(visibleLogLines(s, 2)).toEqual(['b', 'c']);
    s = logsReducer(s, { type: 'follow' });
    expect(visibleLogLines(s, 2)).toEqual(['e', 'f']);
    s = logsReducer(s, { type: 'scroll', delta: 1000, page: 2 });
    expect(visibleLogLines(s, 2)).toEqual(['a', 'b']);
  });

  it('strips terminal escapes and control characters from console lines', () => {
    expect(cleanLine('\x1b[1;32mOK\x1b[0m boot\x07\tdone')).toBe('OK boot  done');
  });
});

describe('layout helpers', () => {
  it('fits text with an ellipsis and pads it', () => {
    expect(fit('abcdef', 4)).toBe('abc…');
    expect(fit('ab', 4)).toBe('ab  ');
    expect(fit('ab', 4, false)).toBe('ab');
  });

  it('sizes the VM table to 80 columns, shrinking long names and images', () => {
    const now = Date.now();
    const rows = [vmCells(makeVm('a-very-long-development-machine-name', { image: 'debian-bookworm-with-extras' }), now)];
    const widths = columnWidths(rows, 80);
    expect(2 + widths.reduce((a, b) => a + b, 0) + 2 * (widths.length - 1)).toBeLessThanOrEqual(80);
    // Wide terminals give names their full length.
    expect(columnWidths(rows, 200)[0]).toBe('a-very-long-development-machine-name'.length);
  });

  it('scrolls the table window to keep the selection in view', () => {
    expect(windowStart(0, 100, 10)).toBe(0);
    expect(windowStart(9, 100, 10)).toBe(0);
    expect(windowStart(10, 100, 10)).toBe(1);
    expect(windowStart(99, 100, 10)).toBe(90);
    expect(windowStart(5, 3, 10)).toBe(0);
  });

  it('drops key hints that do not fit, keeping help last', () => {
    const hints: [string, string][] = [['s', 'start'], ['x', 'stop'], ['q', 'quit']];
    expect(hintLine(hints, 80)).toBe('s start  x stop  q quit  ? help');
    expect(hintLine(hints, 24)).toBe('s start  x stop  ? help');
    expect(hintLine(hints, 80, false)).toBe('s start  x stop  q quit');
  });
});

describe('theme', () => {
  it('uses no colour when NO_COLOR is set to anything', () => {
    expect(themeFor({ NO_COLOR: '1' })).toBe(NO_COLOR_THEME);
    expect(themeFor({ NO_COLOR: '' })).toBe(COLOR_THEME);
    expect(themeFor({})).toBe(COLOR_THEME);
  });

  it('uses only hues that adapt to dark and light backgrounds', () => {
    expect(Object.values(COLOR_THEME).filter((c) => /white|black|gray|grey|#/i.test(c ?? ''))).toEqual([]);
  });
});
