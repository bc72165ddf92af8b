// The TUI rendered with ink-testing-library against a fake client: frames after key presses.
import { describe, it, expect, afterEach } from 'vitest';
import { ApiError } from '../../src/cli/errors.js';
import { FakeTuiClient, makeImage, makeVm } from './fake-client.js';
import { KEY, renderApp, type Rendered } from './render.js';

let app: Rendered | null = null;
afterEach(() => {
  app?.unmount();
  app = null;
});

function setup(opts: { columns?: number; rows?: number } = {}) {
  const fake = new FakeTuiClient();
  fake.imageList = [makeImage('debian', { rootfsSizeBytes: 2 ** 30 }), makeImage('alpine', { rootfsSizeBytes: 2 ** 27 })];
  fake.vms = [
    makeVm('dev', { state: 'running', pid: 4242, vcpus: 2, memoryMib: 1024 }),
    makeVm('web'),
    makeVm('db', { state: 'error', lastError: 'firecracker exited with code 1: KVM unavailable' }),
  ];
  app = renderApp(fake, opts);
  return { fake, app };
}

/** The table row of a VM (the line that starts with its name after the selection mark). */
const rowOf = (frame: string, name: string) => frame.split('\n').find((l) => new RegExp(`^[ ›*] ${name} `).test(l)) ?? '';

describe('banger tui', () => {
  it('shows the VM table with its columns and the selected VM in detail', async () => {
    const { app } = setup();
    const frame = await app.waitForFrame((f) => f.includes('web'), 'the VM list');
    expect(frame).toMatch(/NAME\s+STATE\s+IP\s+VCPUS\s+MEMORY\s+IMAGE\s+AGE/);
    expect(rowOf(frame, 'dev')).toMatch(/dev\s+running\s+172\.16\.0\.\d+\s+2\s+1024 MiB\s+debian\s+1m/);
    // Sorted by name, first row selected: db, with its last error.
    expect(rowOf(frame, 'db')).toMatch(/^› db/);
    expect(frame).toContain('── db ──');
    expect(frame).toContain('error firecracker exited with code 1: KVM unavailable');
    expect(frame).toContain('● live');
  });

  it('moves the selection with the arrow keys and j/k, and the details follow', async () => {
    const { app } = setup();
    await app.waitForFrame((f) => f.includes('── db ──'));
    await app.press(KEY.down);
    await app.waitForFrame((f) => f.includes('── dev ──') && /pid 4242/.test(f), 'details of dev');
    await app.press('j', 'j');
    await app.waitForFrame((f) => f.includes('── web ──'), 'details of web');
    await app.press('k');
    await app.waitForFrame((f) => f.includes('── dev ──'));
  });

  it('applies vm.state and vm.deleted events without fetching the list again', async () => {
    const { app, fake } = setup();
    await app.waitForFrame((f) => f.includes('web'));
    fake.setState('web', { state: 'running', pid: 77 });
    await app.waitForFrame((f) => /web\s+running/.test(rowOf(f, 'web')), 'web running');
    fake.emit({ type: 'vm.deleted', at: '', vmId: fake.vms.find((v) => v.name === 'dev')!.id, name: 'dev' });
    await app.waitForFrame((f) => rowOf(f, 'dev') === '', 'dev gone');
    fake.emit({ type: 'vm.state', at: '', vm: makeVm('api', { state: 'creating' }) });
    await app.waitForFrame((f) => /api\s+creating/.test(rowOf(f, 'api')), 'api added');
    expect(fake.listCalls).toBe(1);
    expect(fake.subscribeCalls).toBe(1);
  });

  it('shows "reconnecting" while the daemon is gone, and refetches the list when it is back', async () => {
    const { app, fake } = setup();
    await app.waitForFrame((f) => f.includes('web'));
    fake.down('connect ECONNREFUSED /run/banger/bangerd.sock');
    const frame = await app.waitForFrame((f) => f.includes('reconnecting (attempt 2'), 'a second attempt');
    expect(frame).toContain('● reconnecting…');
    expect(frame).toContain('ECONNREFUSED');
    // What it knew stays on screen.
    expect(rowOf(frame, 'web')).not.toBe('');
    fake.vms.push(makeVm('new-one'));
    fake.up();
    await app.waitForFrame((f) => f.includes('● live') && f.includes('new-one'), 'live again with the new list');
    expect(fake.listCalls).toBe(2);
    expect(app.lastFrame()).not.toContain('reconnecting');
  });

  it('starts the selected VM with s and shows the phases and elapsed time of the operation', async () => {
    const { app, fake } = setup();
    await app.waitForFrame((f) => f.includes('web'));
    await app.press('G');
    await app.waitForFrame((f) => f.includes('── web ──'));
    await app.press('s');
    const op = await app.waitFor(() => fake.ops[0], 'the start call');
    expect(op).toMatchObject({ method: 'start', vm: fake.vms.find((v) => v.name === 'web')!.id });
    expect(op.opId).toMatch(/^[A-Za-z0-9-]{1,64}$/);
    await app.waitForFrame((f) => /… starting web: waiting for the daemon \d+\.\ds/.test(f), 'the pending operation');
    fake.progress(op, 'vmm.spawn', 'pid 99');
    await app.waitForFrame((f) => /… starting web: vmm\.spawn \(pid 99\) \d+\.\ds/.test(f), 'the phase');
    // The row is marked busy while the operation runs.
    expect(app.lastFrame()).toMatch(/^\* web/m);
    op.resolve(fake.setState('web', { state: 'running', pid: 99 }));
    await app.waitForFrame((f) => /✓ started web in \d+\.\ds/.test(f), 'the outcome');
  });

  it('shows the daemon error of a failed action, until Esc dismisses it', async () => {
    const { app, fake } = setup();
    await app.waitForFrame((f) => f.includes('web'));
    await app.press('x');
    const op = await app.waitFor(() => fake.ops[0], 'the stop call');
    expect(op.method).toBe('stop');
    op.reject(new ApiError('failed_precondition', 'VM "db" is error; start it first', 409, null));
    await app.waitForFrame((f) => f.includes('✗ stopping db failed after') && f.includes('VM "db" is error; start it first'), 'the error');
    await app.press(KEY.escape);
    await app.waitForFrame((f) => !f.includes('✗'), 'the error dismissed');
  });

  it('r restarts the selected VM', async () => {
    const { app, fake } = setup();
    await app.waitForFrame((f) => f.includes('web'));
    await app.press('j', 'r');
    const op = await app.waitFor(() => fake.ops[0], 'the restart call');
    expect(op).toMatchObject({ method: 'restart', vm: fake.vms.find((v) => v.name === 'dev')!.id });
    fake.progress(op, 'vmm.ctrl-alt-del');
    await app.waitForFrame((f) => f.includes('restarting dev: vmm.ctrl-alt-del'), 'the phase');
  });

  it('X kills at once: stop with force', async () => {
    const { app, fake } = setup();
    await app.waitForFrame((f) => f.includes('web'));
    await app.press('X');
    const op = await app.waitFor(() => fake.ops[0], 'the stop call');
    expect(op).toMatchObject({ method: 'stop', body: { force: true } });
  });

  it('asks before deleting: n keeps the VM, y deletes it (stopping it first when running)', async () => {
    const { app, fake } = setup();
    await app.waitForFrame((f) => f.includes('web'));
    await app.press('j', 'd');
    let frame = await app.waitForFrame((f) => f.includes('Delete VM dev and its disk?'), 'the confirmation');
    expect(frame).toContain('dev is running: it will be stopped first.');
    await app.press('n');
    await app.waitForFrame((f) => !f.includes('Delete VM'), 'the dialog closed');
    expect(fake.ops).toEqual([]);
    await app.press('d');
    await app.waitForFrame((f) => f.includes('Delete VM dev'));
    // Other keys do nothing while it asks.
    await app.press('s', 'j');
    expect(fake.ops).toEqual([]);
    await app.press('y');
    const op = await app.waitFor(() => fake.ops[0], 'the delete call');
    expect(op).toMatchObject({ method: 'delete', vm: fake.vms.find((v) => v.name === 'dev')!.id, body: { force: true } });
    frame = await app.waitForFrame((f) => f.includes('deleting dev'), 'the progress');
    expect(frame).not.toContain('Delete VM');
  });

  it('handles keys typed faster than frames in order, each on the state the previous one left', async () => {
    const { app, fake } = setup();
    await app.waitForFrame((f) => f.includes('web'));
    app.type('j', 'j', 'd');
    await app.waitForFrame((f) => f.includes('Delete VM'), 'the confirmation');
    expect(app.lastFrame()).toContain('Delete VM web and its disk?');
    app.type('y', '/', 'd', 'e', 'v', KEY.enter, 'x');
    const op = await app.waitFor(() => fake.ops.length === 2 && fake.ops, 'the delete and the stop');
    expect(op.map((o) => [o.method, fake.vms.find((v) => v.id === o.vm)?.name])).toEqual([
      ['delete', 'web'],
      ['stop', 'dev'],
    ]);
  });

  it('does not force the deletion of a stopped VM', async () => {
    const { app, fake } = setup();
    await app.waitForFrame((f) => f.includes('web'));
    await app.press('G', 'd');
    await app.waitForFrame((f) => f.includes('Delete VM web'));
    expect(app.lastFrame()).not.toContain('will be stopped first');
    await app.press('y');
    const op = await app.waitFor(() => fake.ops[0], 'the delete call');
    expect(op.body).toEqual({ force: false });
  });

  it('filters the table by name with /, Enter keeps the filter, Esc clears it', async () => {
    const { app } = setup();
    await app.waitForFrame((f) => f.includes('web'));
    await app.press('/', 'w', 'e');
    let frame = await app.waitForFrame((f) => f.includes('filter: we'), 'the filter');
    expect(rowOf(frame, 'web')).not.toBe('');
    expect(rowOf(frame, 'dev')).toBe('');
    expect(rowOf(frame, 'db')).toBe('');
    expect(frame).toContain('1 of 3 VMs');
    await app.press(KEY.backspace);
    frame = await app.waitForFrame((f) => f.includes('filter: w') && !f.includes('filter: we'));
    await app.press('z');
    await app.waitForFrame((f) => f.includes('no VM name contains "wz"'));
    await app.press(KEY.backspace, KEY.enter);
    frame = await app.waitForFrame((f) => !f.includes('Enter keep'), 'the filter line closed');
    expect(frame).toContain('filter: w');
    // Keys act on the filtered table again: s starts web, the only VM shown.
    await app.press(KEY.escape);
    frame = await app.waitForFrame((f) => !f.includes('filter:'), 'the filter cleared');
    expect(rowOf(frame, 'dev')).not.toBe('');
  });

  it('opens the help overlay with ? and closes it with any key', async () => {
    const { app, fake } = setup();
    await app.waitForFrame((f) => f.includes('web'));
    await app.press('?');
    const frame = await app.waitForFrame((f) => f.includes('keys (any key closes this)'), 'the help');
    expect(frame).toContain('delete it and its disk (asks first)');
    expect(frame).toContain('ssh into it');
    await app.press('s');
    await app.waitForFrame((f) => f.includes('NAME') && !f.includes('keys (any key'), 'the table again');
    // The key that closed the help did nothing else.
    expect(fake.ops).toEqual([]);
  });

  it('validates the create form and sends only a valid request', async () => {
    const { app, fake } = setup();
    await app.waitForFrame((f) => f.includes('web'));
    await app.press('n');
    await app.waitForFrame((f) => f.includes('create a VM'), 'the form');
    await app.press('W', 'e', 'b');
    await app.waitForFrame((f) => f.includes('✗ use a-z, 0-9 and dashes'), 'the name error');
    await app.press(KEY.backspace, KEY.backspace, KEY.backspace, 'w', 'e', 'b');
    await app.waitForFrame((f) => f.includes('✗ a VM named "web" already exists'), 'the duplicate error');
    // Images are listed by name: alpine (128 MiB) first; debian (1 GiB) is one to the right.
    await app.press(KEY.backspace, KEY.backspace, KEY.backspace, 'a', 'p', 'i', KEY.tab, KEY.right, KEY.tab, KEY.backspace, '4', '0');
    await app.waitForFrame((f) => f.includes('✗ a whole number from 1 to 32'), 'the vCPU error');
    await app.press(KEY.tab, KEY.tab, '5', '1', '2', 'M');
    await app.waitForFrame((f) => f.includes("✗ at least the image's size, 1 GiB"), 'the disk error');
    // Enter with errors sends nothing.
    await app.press(KEY.enter);
    expect(fake.ops).toEqual([]);
    expect(app.lastFrame()).toContain('create a VM');
    // Fix: 4 vCPUs, a smaller image (alpine, 128 MiB), NAT off, not started.
    await app.press(KEY.shiftTab, KEY.shiftTab, KEY.backspace, KEY.up, KEY.left, KEY.down, KEY.down, KEY.down, KEY.down, ' ', KEY.tab, ' ');
    await app.waitForFrame((f) => !f.includes('✗'), 'no errors left');
    await app.press(KEY.enter);
    const op = await app.waitFor(() => fake.ops[0], 'the create call');
    expect(op.method).toBe('create');
    expect(op.body).toEqual({ name: 'api', image: fake.imageList[1].id, vcpus: 4, memoryMib: 512, diskSizeBytes: 512 * 2 ** 20, nat: false, start: false });
    await app.waitForFrame((f) => f.includes('creating api') && f.includes('NAME'), 'back on the table with the progress');
  });

  it('selects the VM a create makes once the daemon names it', async () => {
    const { app, fake } = setup();
    await app.waitForFrame((f) => f.includes('web'));
    await app.press('n');
    await app.waitForFrame((f) => f.includes('create a VM'));
    await app.press('z', 'z', KEY.enter);
    const op = await app.waitFor(() => fake.ops[0], 'the create call');
    const zz = makeVm('zz', { state: 'creating' });
    fake.vms.push(zz);
    fake.emit({ type: 'vm.state', at: '', vm: zz });
    fake.progress(op, 'disk.copy', undefined, zz.id);
    await app.waitForFrame((f) => f.includes('── zz ──') && /^[›*] zz/m.test(f), 'zz selected');
  });

  it('Esc leaves the create form without creating anything', async () => {
    const { app, fake } = setup();
    await app.waitForFrame((f) => f.includes('web'));
    await app.press('n');
    await app.waitForFrame((f) => f.includes('create a VM'));
    await app.press('q', KEY.escape);
    await app.waitForFrame((f) => f.includes('NAME') && !f.includes('create a VM'));
    expect(fake.ops).toEqual([]);
  });

  it('lists images and creates a VM from the one picked', async () => {
    const { app } = setup();
    await app.waitForFrame((f) => f.includes('web'));
    await app.press('i');
    let frame = await app.waitForFrame((f) => f.includes('ROOTFS') && f.includes('alpine'), 'the images');
    expect(frame).toMatch(/› alpine\s+128 MiB/);
    await app.press(KEY.down, 'n');
    frame = await app.waitForFrame((f) => f.includes('create a VM'), 'the form');
    expect(frame).toContain('‹ debian ›');
  });

  it('fetches the images again when the daemon says they changed', async () => {
    const { app, fake } = setup();
    await app.waitForFrame((f) => f.includes('web'));
    await app.press('i');
    await app.waitForFrame((f) => f.includes('alpine'));
    fake.imageList = [...fake.imageList, makeImage('ubuntu')];
    fake.emit({ type: 'image.changed', at: '' });
    await app.waitForFrame((f) => f.includes('ubuntu'), 'the new image');
    expect(fake.listCalls).toBe(1);
  });

  it('follows the console on the logs screen', async () => {
    const { app, fake } = setup();
    await app.waitForFrame((f) => f.includes('web'));
    const dev = fake.vms.find((v) => v.name === 'dev')!;
    fake.consoles.set(dev.id, ['[    0.000000] Linux version 6.1', 'Welcome']);
    await app.press('j');
    // The details pane shows the console's last lines.
    await app.waitForFrame((f) => f.includes('── dev ──') && f.includes('Welcome'), 'the console tail');
    await app.press('l');
    await app.waitForFrame((f) => f.includes('console of dev') && f.includes('Linux version 6.1'), 'the logs screen');
    const follow = await app.waitFor(() => fake.follows[0], 'the follow');
    follow.onData('dev login: \x1b[1mroot\x1b[0m\n');
    await app.waitForFrame((f) => f.includes('dev login: root'), 'new console output');
    await app.press(KEY.escape);
    await app.waitForFrame((f) => f.includes('NAME'), 'the table');
    await app.waitFor(() => follow.signal.aborted, 'the follow to stop');
  });

  it('refuses ssh into a VM that is not running, and hands the terminal over for one that is', async () => {
    const { app, fake } = setup();
    await app.waitForFrame((f) => f.includes('web'));
    await app.press('G', 'e');
    await app.waitForFrame((f) => f.includes('✗ web is stopped: start it first (s)'), 'the refusal');
    expect(fake.sshCalls).toEqual([]);
    fake.sshExitCode = 255;
    let frameDuringSsh = '';
    fake.duringSsh = async () => {
      // The TUI lets go of the keyboard while ssh has the terminal.
      await app.waitFor(() => !app.isRaw(), 'raw mode off during ssh');
      frameDuringSsh = app.lastFrame();
    };
    await app.press('g', 'j', 'e');
    await app.waitForFrame((f) => f.includes('ssh to dev') && f.includes('failed'), 'the ssh failure');
    expect(fake.sshCalls.map((v) => v.name)).toEqual(['dev']);
    expect(frameDuringSsh).toContain('ssh dev in progress');
    // Keys work again once the terminal is back in raw mode.
    await app.waitFor(() => app.isRaw(), 'raw mode again');
    await app.press('s');
    await app.waitFor(() => fake.ops[0], 'a start after ssh');
  });

  it('fits 80x24: no line wider than 80, no more than 24 lines', async () => {
    const { app, fake } = setup({ columns: 80, rows: 24 });
    fake.vms.push(
      ...Array.from({ length: 30 }, (_, i) => makeVm(`machine-with-a-rather-long-name-${i}`, { image: 'debian-bookworm-with-many-extras' })),
    );
    const frame = await app.waitForFrame((f) => f.includes('── db ──'), 'the table');
    const lines = frame.split('\n');
    expect(lines.length).toBeLessThanOrEqual(24);
    for (const line of lines) expect([...line].length, line).toBeLessThanOrEqual(80);
    expect(frame).toContain('s start');
    expect(frame).toContain('? help');
    // The window follows the selection down the long list.
    await app.press('G');
    await app.waitForFrame((f) => /^› web/m.test(f), 'the last row');
  });

  it('puts the details beside the table in a wide terminal', async () => {
    const { app } = setup({ columns: 160, rows: 40 });
    const frame = await app.waitForFrame((f) => f.includes('── db ──'));
    const row = frame.split('\n').find((l) => l.includes('NAME'))!;
    expect(row).toContain('── db ──');
    expect(frame.split('\n').length).toBeLessThanOrEqual(40);
  });

  it('q quits: the app unmounts and closes its event stream', async () => {
    const { app, fake } = setup();
    await app.waitForFrame((f) => f.includes('web'));
    expect(fake.isSubscribed).toBe(true);
    await app.press('q');
    await app.waitFor(() => !fake.isSubscribed, 'the stream closed');
  });
});
