// The real FirecrackerClient against the real stand-in process, over a Unix socket.
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { BangerError } from '../../src/core/errors.js';
import type { Image, Vm } from '../../src/core/models.js';
import { FirecrackerApiError, FirecrackerClient } from '../../src/firecracker/api.js';
import { applyFirecrackerConfig, buildFirecrackerConfig } from '../../src/firecracker/config.js';
import type { MachineConfiguration } from '../../src/firecracker/types.js';
import { ensureStandinBuilt } from '../fc-standin/build.js';

let bundle: string;
let dir: string;
let sock: string;
let recordFile: string;
let child: ChildProcess | null = null;
let exited: Promise<number | null>;

beforeAll(async () => {
  bundle = await ensureStandinBuilt();
});

/** Starts the stand-in and waits until it answers (the socket file exists from bind(), before listen()). */
async function startStandin(env: Record<string, string> = {}): Promise<FirecrackerClient> {
  const out = openSync(join(dir, 'console.log'), 'a');
  child = spawn(process.execPath, [bundle, '--api-sock', sock, '--id', 'vm_under_test'], {
    env: { ...process.env, FC_STANDIN_RECORD: recordFile, ...env },
    stdio: ['ignore', out, out],
  });
  closeSync(out);
  const c = child;
  exited = new Promise((resolve) => c.on('exit', (code) => resolve(code)));
  const client = new FirecrackerClient(sock, { timeoutMs: 2_000 });
  const deadline = Date.now() + 5_000;
  for (;;) {
    if (existsSync(sock) && (await client.getInstanceInfo().then(() => true, () => false))) break;
    if (Date.now() > deadline) throw new Error('stand-in did not answer on its socket');
    await new Promise((r) => setTimeout(r, 10));
  }
  truncateSync(recordFile);
  return client;
}

function recorded(): { method: string; path: string; body: unknown }[] {
  if (!existsSync(recordFile)) return [];
  return readFileSync(recordFile, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as { method: string; path: string; body: unknown });
}

async function rejection(p: Promise<unknown>): Promise<FirecrackerApiError> {
  const err = await p.then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(FirecrackerApiError);
  return err as FirecrackerApiError;
}

beforeEach(() => {
  // Under /tmp, so the socket path stays far below the 108-byte limit.
  dir = mkdtempSync('/tmp/fcc-');
  sock = join(dir, 'fc.sock');
  recordFile = join(dir, 'requests.ndjson');
});

afterEach(async () => {
  if (child && child.exitCode === null && child.signalCode === null) {
    child.kill('SIGKILL');
    await exited;
  }
  child = null;
  rmSync(dir, { recursive: true, force: true });
});

function testVm(tap: string): Vm {
  return {
    id: '0a1b2c3d4e5f',
    name: 'dev',
    imageId: 'ffeeddccbbaa',
    vcpus: 2,
    memoryMib: 256,
    diskSizeBytes: 1 << 30,
    nat: false,
    createdAt: '2025-01-01T00:00:00.000Z',
    netIndex: 0,
    hostIp: '172.16.0.1',
    guestIp: '172.16.0.2',
    tap,
    mac: '06:00:ac:10:00:02',
    state: 'starting',
    pid: null,
    pidStartTime: null,
    lastError: null,
    updatedAt: '2025-01-01T00:00:00.000Z',
  };
}

function testImage(): Image {
  const kernel = join(dir, 'vmlinux');
  const initrd = join(dir, 'initrd.img');
  writeFileSync(kernel, 'not really a kernel');
  writeFileSync(initrd, 'not really an initrd');
  return {
    id: 'ffeeddccbbaa',
    name: 'debian',
    kernelPath: kernel,
    rootfsPath: join(dir, 'rootfs.ext4'),
    initrdPath: initrd,
    bootArgs: 'root=/dev/vda rw',
    rootfsSizeBytes: 1 << 30,
    createdAt: '2025-01-01T00:00:00.000Z',
  };
}

describe('FirecrackerClient against the stand-in', () => {
  it('reads instance info and version', async () => {
    const client = await startStandin();
    expect(await client.getInstanceInfo()).toEqual({ id: 'vm_under_test', state: 'Not started', vmm_version: '1.16.1', app_name: 'Firecracker' });
    expect(await client.getVersion()).toEqual({ firecracker_version: '1.16.1' });
  });

  it('sends each configuration body exactly as built, in order, then boots', async () => {
    const client = await startStandin();
    const disk = join(dir, 'disk.ext4');
    writeFileSync(disk, '');
    // "lo" exists on every host, so the stand-in's TAP check passes without making a TAP.
    const config = buildFirecrackerConfig(testVm('lo'), testImage(), disk);
    await applyFirecrackerConfig(client, config);
    await client.instanceStart();
    expect(recorded()).toEqual([
      { method: 'PUT', path: '/machine-config', body: config.machineConfig },
      { method: 'PUT', path: '/boot-source', body: config.bootSource },
      { method: 'PUT', path: '/drives/rootfs', body: config.drives[0] },
      { method: 'PUT', path: '/network-interfaces/eth0', body: config.networkInterfaces[0] },
      { method: 'PUT', path: '/actions', body: { action_type: 'InstanceStart' } },
    ]);
    expect(await client.getMachineConfig()).toEqual({ vcpu_count: 2, mem_size_mib: 256, smt: false, track_dirty_pages: false, huge_pages: 'None' });
    expect((await client.getInstanceInfo()).state).toBe('Running');
    // The boot banner went to the console with the kernel command line.
    expect(readFileSync(join(dir, 'console.log'), 'utf8')).toContain(`Command line: ${config.bootSource.boot_args}`);
  });

  it('surfaces the fault_message of a 400 for an unknown field as failed_precondition', async () => {
    const client = await startStandin();
    const body = { vcpu_count: 1, mem_size_mib: 128, vcpus: 2 } as MachineConfiguration;
    const err = await rejection(client.putMachineConfig(body));
    expect(err.status).toBe(400);
    expect(err.code).toBe('failed_precondition');
    expect(err.faultMessage).toBe(
      'An error occurred when deserializing the json body of a request: unknown field `vcpus`, expected one of ' +
        '`vcpu_count`, `mem_size_mib`, `smt`, `cpu_template`, `track_dirty_pages`, `huge_pages` at line 1 column 42.',
    );
    expect(err.message).toBe(`PUT /machine-config answered 400: ${err.faultMessage}`);
  });

  it('surfaces a missing required field and a body id that differs from the path id', async () => {
    const client = await startStandin();
    const missing = await rejection(client.putBootSource({} as never));
    expect(missing.faultMessage).toBe(
      'An error occurred when deserializing the json body of a request: missing field `kernel_image_path` at line 1 column 2.',
    );
    const bad = await rejection(client.putDrive({ drive_id: 'root-fs', path_on_host: '/x', is_root_device: true }));
    expect(bad.message).toBe('PUT /drives/root-fs answered 400: API Resource IDs can only contain alphanumeric characters and underscores.');
  });

  it('refuses pre-boot calls after InstanceStart and post-boot actions before it', async () => {
    const client = await startStandin();
    const early = await rejection(client.sendCtrlAltDel());
    expect(early.faultMessage).toBe('The requested operation is not supported before starting the microVM.');
    const kernel = join(dir, 'vmlinux');
    writeFileSync(kernel, '');
    await client.putBootSource({ kernel_image_path: kernel });
    await client.instanceStart();
    const late = await rejection(client.putMachineConfig({ vcpu_count: 2, mem_size_mib: 256 }));
    expect(late.status).toBe(400);
    expect(late.faultMessage).toBe('The requested operation is not supported after starting the microVM.');
    const again = await rejection(client.instanceStart());
    expect(again.message).toBe('PUT /actions answered 400: The requested operation is not supported after starting the microVM.');
  });

  it('refuses InstanceStart when a drive file is missing, naming it', async () => {
    const client = await startStandin();
    const kernel = join(dir, 'vmlinux');
    writeFileSync(kernel, '');
    await client.putBootSource({ kernel_image_path: kernel });
    await client.putDrive({ drive_id: 'rootfs', path_on_host: join(dir, 'nope.ext4'), is_root_device: true, is_read_only: false });
    const err = await rejection(client.instanceStart());
    expect(err.faultMessage).toContain(join(dir, 'nope.ext4'));
    expect((await client.getInstanceInfo()).state).toBe('Not started');
  });

  it('names the failing step when an injected fault stops the configuration', async () => {
    const client = await startStandin({ FC_STANDIN_FAIL: 'PUT /drives/rootfs' });
    const config = buildFirecrackerConfig(testVm('lo'), testImage(), join(dir, 'disk.ext4'));
    const err = await applyFirecrackerConfig(client, config).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BangerError);
    expect((err as BangerError).message).toBe(
      'vmm.configure drives/rootfs: PUT /drives/rootfs answered 400: fc-standin: injected failure for PUT /drives/rootfs (FC_STANDIN_FAIL)',
    );
    expect((err as BangerError).code).toBe('failed_precondition');
    const cause = (err as BangerError).cause as FirecrackerApiError;
    expect(cause).toBeInstanceOf(FirecrackerApiError);
    expect(cause.status).toBe(400);
    expect(recorded().map((r) => r.path)).toEqual(['/machine-config', '/boot-source', '/drives/rootfs']);
  });

  it('times out, as internal, when Firecracker accepts the connection but never answers', async () => {
    await startStandin();
    // A stopped process: the kernel still queues connections on its listening socket.
    child!.kill('SIGSTOP');
    const client = new FirecrackerClient(sock, { timeoutMs: 300 });
    const t0 = Date.now();
    const err = await rejection(client.getInstanceInfo());
    const took = Date.now() - t0;
    expect(err.timedOut).toBe(true);
    expect(err.code).toBe('internal');
    expect(err.status).toBeNull();
    expect(err.message).toBe(`GET / got no answer within 300 ms from ${sock}`);
    expect(took).toBeGreaterThanOrEqual(290);
    expect(took).toBeLessThan(1_500);
    child!.kill('SIGCONT');
  });

  it('reports a missing socket as an internal connection error', async () => {
    const err = await rejection(new FirecrackerClient(join(dir, 'absent.sock')).getVersion());
    expect(err.code).toBe('internal');
    expect(err.status).toBeNull();
    expect(err.message).toBe(`GET /version failed on ${join(dir, 'absent.sock')}: ENOENT`);
  });

  it('SendCtrlAltDel after boot makes the stand-in exit 0, leaving its socket behind', async () => {
    const client = await startStandin();
    const kernel = join(dir, 'vmlinux');
    writeFileSync(kernel, '');
    await client.putBootSource({ kernel_image_path: kernel });
    await client.instanceStart();
    await client.sendCtrlAltDel();
    expect(await exited).toBe(0);
    expect(existsSync(sock)).toBe(true);
  });
});
