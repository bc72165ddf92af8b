// DaemonTuiClient against a real daemon (the built bangerd on a temporary socket): reads, an
// operation whose progress carries the TUI's opId, the event stream and its end, console files.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { mkdirSync, writeFileSync, appendFileSync } from 'node:fs';
import { join } from 'node:path';
import { BangerEnv, makeImageFiles } from '../helpers/banger-env.js';
import { loadConfig } from '../../src/core/config.js';
import { vmDir } from '../../src/core/paths.js';
import type { VmView } from '../../src/core/models.js';
import { DaemonTuiClient } from '../../src/tui/daemon-client.js';
import type { Subscription, TuiEvent } from '../../src/tui/client.js';
import { until } from '../helpers/wait.js';



describe('DaemonTuiClient against a real daemon', () => {
  let env: BangerEnv;
  let client: DaemonTuiClient;
  const events: TuiEvent[] = [];
  const closes: (Error | undefined)[] = [];
  let sub: Subscription | null = null;

  beforeAll(() => {
    // A fixed build id for the daemon and for this process, so nothing gets replaced.
    env = new BangerEnv({ BANGER_BUILD_ID: 'tui-client-test' });
    const files = makeImageFiles(join(env.dir, 'img'), 16);
    const r = env.cli(['image', 'add', 'base', '--kernel', files.kernel, '--rootfs', files.rootfs]);
    expect(r.code, r.stderr).toBe(0);
    client = new DaemonTuiClient(loadConfig({ ...process.env, ...env.env }), null);
  });

  afterAll(async () => {
    sub?.close();
    await env?.cleanup();
  });

  it('subscribes: the stream opens with hello, and VM changes arrive as vm.state and vm.deleted', async () => {
    sub = await client.subscribe({ onEvent: (e) => events.push(e), onClose: (err) => closes.push(err) });
    await until('hello', () => events.find((e) => e.type === 'hello'));
    const made = env.json<VmView>(['vm', 'create', '--name', 'seen', '--image', 'base', '--no-start']);
    const state = await until('vm.state of seen', () => events.find((e) => e.type === 'vm.state' && e.vm.name === 'seen' && e.vm.state === 'stopped'));
    expect(state).toMatchObject({ vm: { id: made.id } });
    expect(env.cli(['vm', 'rm', 'seen']).code).toBe(0);
    await until('vm.deleted', () => events.find((e) => e.type === 'vm.deleted' && e.vmId === made.id));
  });

  it('lists VMs and images, and gets one VM', async () => {
    const images = await client.images();
    expect(images.map((i) => i.name)).toEqual(['base']);
    env.json(['vm', 'create', '--name', 'listed', '--image', 'base', '--no-start']);
    const vms = await client.list();
    expect(vms.map((v) => v.name)).toContain('listed');
    expect((await client.get('listed')).name).toBe('listed');
  });

  it('tags the progress of its operations with the opId it sent', async () => {
    const opId = 'tui-test-op-1';
    const vm = await client.create({ name: 'made-by-tui', image: 'base', vcpus: 2, memoryMib: 256, nat: false, start: false }, opId);
    expect(vm).toMatchObject({ name: 'made-by-tui', vcpus: 2, memoryMib: 256, nat: false, state: 'stopped' });
    const phases = events.filter((e) => e.type === 'progress' && e.opId === opId);
    expect(phases.length).toBeGreaterThan(0);
    expect(phases.every((e) => e.type === 'progress' && e.vmId === vm.id)).toBe(true);
  });

  it("rejects with the daemon's message", async () => {
    await expect(client.start('no-such-vm', 'tui-test-op-2')).rejects.toThrow(/no-such-vm/);
    await expect(client.create({ name: 'x', image: 'missing-image', vcpus: 1, memoryMib: 512, nat: true, start: false }, 'tui-test-op-3')).rejects.toThrow(
      /missing-image/,
    );
  });

  it("reads a VM's console: the last lines, then what is appended", async () => {
    const vm = await client.get('made-by-tui');
    const dir = vmDir(loadConfig({ ...process.env, ...env.env }).paths, vm.id);
    mkdirSync(dir, { recursive: true });
    const file = join(dir, 'console.log');
    // More than the 64 KiB backlog: following starts at a line boundary inside it.
    writeFileSync(file, Array.from({ length: 5000 }, (_, i) => `boot line ${i}`).join('\n') + '\n');
    expect(await client.consoleTail(vm.id, 2)).toEqual(['boot line 4998', 'boot line 4999']);
    const ac = new AbortController();
    let got = '';
    const following = client.followConsole(vm.id, (chunk) => (got += chunk), ac.signal);
    await until('the backlog', () => got.includes('boot line 4999\n'));
    expect(got.startsWith('boot line ')).toBe(true);
    expect(got.length).toBeLessThanOrEqual(64 * 1024);
    appendFileSync(file, 'login: ');
    await until('the appended prompt', () => got.endsWith('login: '));
    ac.abort();
    await following;
  });

  it('reports the end of the stream when the daemon stops, and subscribes again once it is back', async () => {
    expect(closes).toEqual([]);
    expect(env.cli(['daemon', 'stop']).code).toBe(0);
    await until('the close', () => closes.length === 1);
    sub = null;
    expect(env.cli(['daemon', 'start']).code).toBe(0);
    events.length = 0;
    sub = await client.subscribe({ onEvent: (e) => events.push(e), onClose: (err) => closes.push(err) });
    await until('hello from the new daemon', () => events.find((e) => e.type === 'hello'));
    expect((await client.list()).map((v) => v.name).sort()).toEqual(['listed', 'made-by-tui']);
  });
});
