// The QEMU stand-in as a process, driven by banger's Firecracker client, with a fake
// qemu-system-x86_64 (./fake-qemu.mjs) in place of QEMU: no root, no TAP, no guest.
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { FirecrackerApiError, FirecrackerClient } from '../../src/firecracker/api.js';
import { parseApiRequest, type ApiAnswer } from '../fc-standin/validation.js';
import { ensureFcQemuBuilt, FC_QEMU_FIRECRACKER } from './build.js';

const FAKE_QEMU = join(import.meta.dirname, 'fake-qemu.mjs');
const hasSetpriv = (process.env.PATH ?? '').split(delimiter).some((d) => {
  try {
    accessSync(join(d, 'setpriv'), constants.X_OK);
    return true;
  } catch {
    return false;
  }
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Running {
  dir: string;
  child: ChildProcess;
  client: FirecrackerClient;
  output: () => string;
  exited: Promise<number | null>;
  /** Each argv the fake QEMU was run with. */
  qemuRuns: () => string[][];
  files: { kernel: string; initrd: string; rootfs: string };
}

const started: Running[] = [];

/** The live processes whose argv holds `needle` (the fake QEMU, found by its test directory). */
function processesWith(needle: string): number[] {
  return readdirSync('/proc')
    .filter((n) => /^\d+$/.test(n))
    .map(Number)
    .filter((pid) => {
      try {
        const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
        return argv.includes(needle) && !readFileSync(`/proc/${pid}/stat`, 'utf8').includes(') Z ');
      } catch {
        return false;
      }
    });
}

async function startStandin(extraEnv: Record<string, string> = {}): Promise<Running> {
  const dir = mkdtempSync(join(tmpdir(), 'fcq-'));
  const files = { kernel: join(dir, 'vmlinux'), initrd: join(dir, 'initrd.img'), rootfs: join(dir, 'rootfs.ext4') };
  for (const f of Object.values(files)) writeFileSync(f, 'x');
  const sock = join(dir, 'api.sock');
  const record = join(dir, 'qemu-runs.ndjson');
  const child = spawn(FC_QEMU_FIRECRACKER, ['--api-sock', sock, '--id', 'fcqemutest'], {
    env: { ...process.env, FC_QEMU_BINARY: FAKE_QEMU, FAKE_QEMU_RECORD: record, ...extraEnv },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout!.on('data', (d) => (output += d));
  child.stderr!.on('data', (d) => (output += d));
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  const client = new FirecrackerClient(sock, { timeoutMs: 5000 });
  const running: Running = {
    dir,
    child,
    client,
    output: () => output,
    exited,
    qemuRuns: () => (existsSync(record) ? readFileSync(record, 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l)) : []),
    files,
  };
  started.push(running);
  for (let i = 0; ; i++) {
    try {
      await client.getInstanceInfo();
      return running;
    } catch (err) {
      if (i > 200 || child.exitCode !== null) throw new Error(`the stand-in did not serve its API: ${output}`, { cause: err });
      await sleep(25);
    }
  }
}

async function configure(r: Running): Promise<void> {
  await r.client.putMachineConfig({ vcpu_count: 2, mem_size_mib: 256 });
  await r.client.putBootSource({ kernel_image_path: r.files.kernel, initrd_path: r.files.initrd, boot_args: 'console=ttyS0 reboot=k panic=1' });
  await r.client.putDrive({ drive_id: 'rootfs', path_on_host: r.files.rootfs, is_root_device: true, is_read_only: false });
  // "lo" passes the stand-in's /sys/class/net check; the fake QEMU never opens it.
  await r.client.putNetworkInterface({ iface_id: 'eth0', host_dev_name: 'lo', guest_mac: '06:00:AC:10:00:02' });
}

async function faultOf(p: Promise<unknown>): Promise<{ status: number | null; message: string }> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(FirecrackerApiError);
    const e = err as FirecrackerApiError;
    return { status: e.status, message: e.message };
  }
  throw new Error('expected the call to fail');
}

beforeAll(async () => {
  await ensureFcQemuBuilt();
}, 60_000);

afterEach(async () => {
  for (const r of started.splice(0)) {
    if (r.child.exitCode === null && r.child.signalCode === null) r.child.kill('SIGKILL');
    await r.exited;
    for (const pid of processesWith(r.dir)) process.kill(pid, 'SIGKILL');
    rmSync(r.dir, { recursive: true, force: true });
  }
});

describe('the QEMU stand-in for Firecracker', () => {
  it("answers Firecracker's API with the plain stand-in's validation and fault messages", async () => {
    const r = await startStandin();
    expect(await r.client.getInstanceInfo()).toEqual({ id: 'fcqemutest', state: 'Not started', vmm_version: '1.16.1', app_name: 'Firecracker' });
    const missing = await faultOf(r.client.putMachineConfig({ mem_size_mib: 128 } as never));
    expect(missing.status).toBe(400);
    const expected = parseApiRequest('PUT', '/machine-config', Buffer.from(JSON.stringify({ mem_size_mib: 128 }))) as ApiAnswer;
    expect(expected.body).toEqual({ fault_message: 'An error occurred when deserializing the json body of a request: missing field `vcpu_count` at line 1 column 20.' });
    expect(missing.message).toContain((expected.body as { fault_message: string }).fault_message);
    const early = await faultOf(r.client.sendCtrlAltDel());
    expect(early.message).toContain('The requested operation is not supported before starting the microVM.');
    expect(r.qemuRuns()).toEqual([]);
  });

  it('runs QEMU at InstanceStart with the configured machine, kernel, initrd, command line, drive and TAP', async () => {
    const r = await startStandin();
    await configure(r);
    await r.client.instanceStart();
    const runs = r.qemuRuns();
    expect(runs).toHaveLength(1);
    const argv = runs[0];
    const after = (flag: string) => argv[argv.indexOf(flag) + 1];
    expect(after('-M')).toBe('q35');
    expect(after('-m')).toBe('256');
    expect(after('-smp')).toBe('2');
    expect(argv).toContain('-nographic');
    expect(argv).toContain('-no-reboot');
    expect(argv).not.toContain('-enable-kvm');
    expect(after('-kernel')).toBe(r.files.kernel);
    expect(after('-initrd')).toBe(r.files.initrd);
    expect(after('-append')).toBe('console=ttyS0 reboot=k panic=1 root=/dev/vda rw');
    expect(after('-drive')).toBe(`file=${r.files.rootfs},format=raw,if=virtio,cache=unsafe,readonly=off`);
    expect(after('-netdev')).toBe('tap,id=net0,ifname=lo,script=no,downscript=no');
    expect(after('-device')).toBe('virtio-net-pci,netdev=net0,romfile=,mac=06:00:AC:10:00:02');
    expect((await r.client.getInstanceInfo()).state).toBe('Running');
    // QEMU's stdout is the stand-in's: the guest console.
    expect(r.output()).toContain('fake-qemu: the guest console');
    const again = await faultOf(r.client.instanceStart());
    expect(again.message).toContain('The requested operation is not supported after starting the microVM.');
  });

  it('sends ctrl-alt-delete through the QEMU monitor and exits 0 when QEMU does', async () => {
    const r = await startStandin();
    await configure(r);
    await r.client.instanceStart();
    await r.client.sendCtrlAltDel();
    expect(await r.exited).toBe(0);
    const out = r.output();
    expect(out).toContain('fc-qemu: SendCtrlAltDel: sendkey ctrl-alt-delete to the QEMU monitor');
    expect(out.indexOf('reboot: Restarting system')).toBeGreaterThan(out.indexOf('sendkey ctrl-alt-delete'));
    expect(out).toContain(`fc-qemu: ${FAKE_QEMU} exited with code 0`);
  });

  it("refuses InstanceStart with QEMU's own error when QEMU fails, and keeps serving", async () => {
    const r = await startStandin({ FAKE_QEMU_MODE: 'fail' });
    await configure(r);
    const f = await faultOf(r.client.instanceStart());
    expect(f.status).toBe(400);
    expect(f.message).toMatch(/Start microvm error: fc-qemu: .*fake-qemu\.mjs exited with code 1: .*could not configure \/dev\/net\/tun/);
    expect((await r.client.getInstanceInfo()).state).toBe('Not started');
  });

  it('gives up on a QEMU whose monitor never answers, and kills it', async () => {
    const r = await startStandin({ FAKE_QEMU_MODE: 'hang', FC_QEMU_READY_TIMEOUT_MS: '500' });
    await configure(r);
    const f = await faultOf(r.client.instanceStart());
    expect(f.message).toContain('did not get ready within 500 ms');
    for (let i = 0; i < 100 && processesWith(r.dir).some((p) => p !== r.child.pid); i++) await sleep(20);
    expect(processesWith(r.dir).filter((p) => p !== r.child.pid)).toEqual([]);
  });

  it.skipIf(!hasSetpriv)('takes QEMU with it when it is SIGKILLed', async () => {
    const r = await startStandin();
    await configure(r);
    await r.client.instanceStart();
    const qemu = processesWith(r.dir).filter((p) => p !== r.child.pid);
    expect(qemu).toHaveLength(1);
    r.child.kill('SIGKILL');
    await r.exited;
    for (let i = 0; i < 100 && processesWith(r.dir).length > 0; i++) await sleep(20);
    expect(processesWith(r.dir)).toEqual([]);
  });

  it("refuses a missing kernel with Firecracker's message, without running QEMU", async () => {
    const r = await startStandin();
    await configure(r);
    rmSync(r.files.kernel);
    const f = await faultOf(r.client.instanceStart());
    expect(f.message).toContain(`Boot source error: The kernel file cannot be opened: No such file or directory (os error 2): ${r.files.kernel}`);
    expect(r.qemuRuns()).toEqual([]);
  });
});
