// launchFirecracker / killFirecracker / waitForExit with the real ExecRunner and the stand-in
// process standing in for the firecracker binary.
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { chmodSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ExecRunner } from '../../src/host/runner.js';
import { FailedPreconditionError, InternalError } from '../../src/core/errors.js';
import { FirecrackerClient } from '../../src/firecracker/api.js';
import { capConsoleLog, tailLines } from '../../src/firecracker/console.js';
import { killFirecracker, launchFirecracker, waitForExit, type LaunchOptions } from '../../src/firecracker/launcher.js';
import { findFirecrackerProcesses, hasIdArg, isSameProcess, readCmdline, readStartTime } from '../../src/firecracker/proc.js';
import { STANDIN_BINARY, STANDIN_BUNDLE, STANDIN_DIR, ensureStandinBuilt } from '../fc-standin/build.js';

const runner = new ExecRunner();
let dir: string;
let vmId: string;
let idCounter = 0;
const savedEnv = { ...process.env };

beforeAll(async () => {
  await ensureStandinBuilt();
});

/** Every live process launched with --id <id>: what the tests must leave behind none of. */
function processesWithId(id: string): number[] {
  return readdirSync('/proc')
    .filter((n) => /^\d+$/.test(n))
    .map(Number)
    .filter((pid) => {
      const argv = readCmdline(pid);
      return argv !== null && hasIdArg(argv, id);
    });
}

/** Waits (bounded) until no process holds --id <id>: sudo outlives its child by a moment. */
async function noneLeft(id: string): Promise<number[]> {
  const deadline = Date.now() + 2_000;
  while (processesWithId(id).length > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  return processesWithId(id);
}

beforeEach(() => {
  dir = mkdtempSync('/tmp/fcl-');
  // Unique per test and per run; the form of a real VM id (12 hex characters).
  vmId = `${(process.pid % 0xffff).toString(16).padStart(4, '0')}${(Date.now() % 0xfffff).toString(16).padStart(5, '0')}${(idCounter++).toString(16).padStart(3, '0')}`;
});

afterEach(async () => {
  process.env = { ...savedEnv };
  for (const pid of processesWithId(vmId)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone meanwhile
    }
  }
  rmSync(dir, { recursive: true, force: true });
});

afterAll(() => {
  process.env = savedEnv;
});

function opts(over: Partial<LaunchOptions> = {}): LaunchOptions {
  return {
    runner,
    binary: STANDIN_BINARY,
    apiSock: join(dir, 'fc.sock'),
    vmId,
    vmDir: dir,
    useSudo: false,
    uid: process.getuid!(),
    gid: process.getgid!(),
    ...over,
  };
}

/** Configures a minimal VM on the launched stand-in and boots it. */
async function boot(sock: string): Promise<void> {
  const kernel = join(dir, 'vmlinux');
  writeFileSync(kernel, '');
  const client = new FirecrackerClient(sock);
  await client.putMachineConfig({ vcpu_count: 1, mem_size_mib: 128 });
  await client.putBootSource({ kernel_image_path: kernel, boot_args: 'console=ttyS0' });
  await client.instanceStart();
}

describe('launchFirecracker', () => {
  it('resolves to the real Firecracker pid (found through PATH), whose command line holds the id', async () => {
    process.env.PATH = `${STANDIN_DIR}:${process.env.PATH}`;
    const t0 = performance.now();
    const fc = await launchFirecracker(opts({ binary: 'firecracker' }));
    const took = performance.now() - t0;
    const argv = readCmdline(fc.pid)!;
    expect(argv).toEqual([expect.stringMatching(/node$/), STANDIN_BUNDLE, '--api-sock', join(dir, 'fc.sock'), '--id', vmId]);
    expect(readStartTime(fc.pid)).toBe(fc.startTime);
    expect(readFileSync(join(dir, 'firecracker.pid'), 'utf8').trim()).toBe(String(fc.pid));
    expect(isSameProcess(fc.pid, fc.startTime, vmId)).toBe(true);
    expect(findFirecrackerProcesses().filter((p) => p.vmId === vmId)).toEqual([
      { pid: fc.pid, vmId, startTime: fc.startTime, apiSock: join(dir, 'fc.sock') },
    ]);
    expect((await new FirecrackerClient(join(dir, 'fc.sock')).getInstanceInfo()).id).toBe(vmId);
    expect(readFileSync(join(dir, 'console.log'), 'utf8')).toContain('Running Firecracker v1.16.1');
    console.info(`launch to API answering: ${took.toFixed(0)} ms`);
  });

  it('removes a stale API socket before launching (the stand-in, like Firecracker, refuses an existing one)', async () => {
    writeFileSync(join(dir, 'fc.sock'), 'left over');
    writeFileSync(join(dir, 'firecracker.pid'), '1\n');
    const fc = await launchFirecracker(opts());
    expect(statSync(join(dir, 'fc.sock')).isSocket()).toBe(true);
    expect(readFileSync(join(dir, 'firecracker.pid'), 'utf8').trim()).toBe(String(fc.pid));
  });

  it('through sudo, hands the socket to the given owner', async () => {
    const fc = await launchFirecracker(opts({ useSudo: true, uid: 65534, gid: 65534 }));
    const st = statSync(join(dir, 'fc.sock'));
    expect([st.uid, st.gid]).toEqual([65534, 65534]);
    // The recorded pid is Firecracker's own, not sudo's or sh's.
    expect(readCmdline(fc.pid)).toContain(STANDIN_BUNDLE);
    await killFirecracker({ runner, pid: fc.pid, startTime: fc.startTime, vmId, useSudo: true });
    expect(isSameProcess(fc.pid, fc.startTime, vmId)).toBe(false);
    expect(await noneLeft(vmId)).toEqual([]);
  });

  it('gives up after apiTimeoutMs when no socket appears, leaving nothing running', async () => {
    process.env.FC_STANDIN_NO_SOCKET = '1';
    const t0 = performance.now();
    const err = await launchFirecracker(opts({ apiTimeoutMs: 700 })).catch((e: unknown) => e);
    const took = performance.now() - t0;
    expect(err).toBeInstanceOf(InternalError);
    expect((err as Error).message).toContain(`firecracker did not answer on its API socket ${join(dir, 'fc.sock')} within 700 ms`);
    expect((err as Error).message).toContain('FC_STANDIN_NO_SOCKET=1, not creating the API socket');
    expect(took).toBeGreaterThanOrEqual(690);
    expect(took).toBeLessThan(3_000);
    expect(processesWithId(vmId)).toEqual([]);
    expect(existsSync(join(dir, 'fc.sock'))).toBe(false);
    expect(existsSync(join(dir, 'firecracker.pid'))).toBe(false);
  });

  it('through sudo, a launch that times out kills Firecracker, its children and sudo alike', async () => {
    // sudo resets the environment, so FC_STANDIN_NO_SOCKET cannot reach the stand-in: a silent
    // "firecracker" with a child of its own instead.
    const silent = join(dir, 'silent-firecracker');
    // Its child carries --id too, so noneLeft() sees it: $4 is the id ("--api-sock S --id ID").
    writeFileSync(silent, '#!/bin/sh\nsh -c "sleep 30; :" child --id "$4" &\nwait\n');
    chmodSync(silent, 0o755);
    const err = await launchFirecracker(opts({ binary: silent, useSudo: true, apiTimeoutMs: 500 })).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InternalError);
    expect((err as Error).message).toContain('firecracker did not answer on its API socket');
    expect(await noneLeft(vmId)).toEqual([]);
    expect(existsSync(join(dir, 'firecracker.pid'))).toBe(false);
  });

  it('fails early, with the console lines, when the process exits at once', async () => {
    const broken = join(dir, 'broken-firecracker');
    writeFileSync(broken, '#!/bin/sh\necho "Error creating the Kvm object: No such file or directory (os error 2)" >&2\nexit 1\n');
    chmodSync(broken, 0o755);
    const t0 = performance.now();
    const err = await launchFirecracker(opts({ binary: broken, apiTimeoutMs: 10_000 })).catch((e: unknown) => e);
    expect(performance.now() - t0).toBeLessThan(2_000);
    expect(err).toBeInstanceOf(FailedPreconditionError);
    // The wrapper writes the pid file before exec, so either stage can see the exit first.
    expect((err as Error).message).toMatch(
      /^firecracker exited with code 1 before (it wrote its pid file|its API answered); console: Error creating the Kvm object: No such file or directory \(os error 2\)$/,
    );
    expect(existsSync(join(dir, 'firecracker.pid'))).toBe(false);
  });

  it('fails early when Firecracker dies after exec but before its API answers', async () => {
    const dying = join(dir, 'dying-firecracker');
    writeFileSync(dying, '#!/bin/sh\nsleep 0.3\necho "panicked at src/main.rs" >&2\nexit 70\n');
    chmodSync(dying, 0o755);
    const err = await launchFirecracker(opts({ binary: dying, apiTimeoutMs: 10_000 })).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(FailedPreconditionError);
    expect((err as Error).message).toMatch(/^firecracker exited with code 70 before its API answered; console: panicked at src\/main.rs$/);
  });
});

describe('killFirecracker and waitForExit', () => {
  it('kills the recorded process and waits until it is gone', async () => {
    const fc = await launchFirecracker(opts());
    await killFirecracker({ runner, pid: fc.pid, startTime: fc.startTime, vmId, useSudo: false });
    expect(isSameProcess(fc.pid, fc.startTime, vmId)).toBe(false);
    expect(processesWithId(vmId)).toEqual([]);
  });

  it('leaves a process alone whose start time differs from the recorded one (a reused pid)', async () => {
    const fc = await launchFirecracker(opts());
    await killFirecracker({ runner, pid: fc.pid, startTime: String(Number(fc.startTime) - 1), vmId, useSudo: false });
    expect(isSameProcess(fc.pid, fc.startTime, vmId)).toBe(true);
  });

  it('notices a Firecracker that crashes on its own', async () => {
    process.env.FC_STANDIN_CRASH_AFTER_MS = '200';
    const fc = await launchFirecracker(opts());
    await boot(join(dir, 'fc.sock'));
    expect(await waitForExit(fc.pid, fc.startTime, vmId, 5_000)).toBe(true);
    expect(tailLines(join(dir, 'console.log'), 1)[0]).toContain('Kernel panic - not syncing');
  });

  it('reports false when the process outlives the wait (the guest ignores Ctrl-Alt-Del), then the kill ends it', async () => {
    process.env.FC_STANDIN_CTRLALTDEL = 'ignore';
    const fc = await launchFirecracker(opts());
    await boot(join(dir, 'fc.sock'));
    await new FirecrackerClient(join(dir, 'fc.sock')).sendCtrlAltDel();
    const t0 = performance.now();
    expect(await waitForExit(fc.pid, fc.startTime, vmId, 400)).toBe(false);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(390);
    await killFirecracker({ runner, pid: fc.pid, startTime: fc.startTime, vmId, useSudo: false });
    expect(processesWithId(vmId)).toEqual([]);
  });

  it('sees the exit that Ctrl-Alt-Del causes', async () => {
    const fc = await launchFirecracker(opts());
    await boot(join(dir, 'fc.sock'));
    await new FirecrackerClient(join(dir, 'fc.sock')).sendCtrlAltDel();
    expect(await waitForExit(fc.pid, fc.startTime, vmId, 5_000)).toBe(true);
    expect(tailLines(join(dir, 'console.log'), 1)).toEqual(['reboot: Restarting system']);
  });
});

describe('console log of a live Firecracker', () => {
  it('can be capped while the process keeps writing, with no hole and no lost order', async () => {
    process.env.FC_STANDIN_CHATTY = '1';
    const fc = await launchFirecracker(opts());
    await boot(join(dir, 'fc.sock'));
    const log = join(dir, 'console.log');
    const deadline = Date.now() + 10_000;
    while (statSync(log).size < 1024 * 1024) {
      if (Date.now() > deadline) throw new Error('chatty stand-in wrote too little');
      await new Promise((r) => setTimeout(r, 20));
    }
    const dropped = capConsoleLog(log, 512 * 1024);
    expect(dropped).toBeGreaterThan(512 * 1024);
    const sizeAfterCap = statSync(log).size;
    await new Promise((r) => setTimeout(r, 200));
    const text = readFileSync(log, 'utf8');
    expect(text.includes('\0')).toBe(false);
    expect(Buffer.byteLength(text)).toBeGreaterThan(sizeAfterCap);
    expect(Buffer.byteLength(text)).toBeLessThan(sizeAfterCap + 4 * 1024 * 1024);
    // Counters keep rising line after line (a line may be lost in the cap's window, never reordered).
    const counters = text
      .split('\n')
      .map((l) => /^\[ chatty (\d{9})\]/.exec(l)?.[1])
      .filter((c): c is string => c !== undefined)
      .map(Number);
    expect(counters.length).toBeGreaterThan(1000);
    for (let i = 1; i < counters.length; i++) expect(counters[i]).toBeGreaterThan(counters[i - 1]);
    await killFirecracker({ runner, pid: fc.pid, startTime: fc.startTime, vmId, useSudo: false });
  });
});
