// A real microVM: the real `firecracker` binary under KVM boots a real kernel and rootfs given by
// BANGER_TEST_KERNEL (an ELF vmlinux) and BANGER_TEST_ROOTFS (ext4), driven by the built CLI and
// daemon inside a throwaway network namespace. Skipped, with the reason, when any of that is missing.
// BANGER_TEST_SSH=1 (for an image with sshd) also waits for the SSH banner and runs a command.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { spawnSync } from 'node:child_process';
import { accessSync, closeSync, constants, existsSync, openSync, readlinkSync, realpathSync, statSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { BangerEnv, STANDIN_DIR, isAlive } from '../helpers/banger-env.js';
import { HostNetns, privilegedSkipReason } from '../helpers/netns.js';
import { readCmdline } from '../../src/firecracker/proc.js';

/** The first executable `name` on PATH, the stand-in's directory excluded. */
function findOnPath(name: string): string | null {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (!dir || dir === STANDIN_DIR) continue;
    const p = join(dir, name);
    try {
      accessSync(p, constants.X_OK);
      if (statSync(p).isFile()) return p;
    } catch {
      // not here
    }
  }
  return null;
}

function kvmProblem(): string | null {
  try {
    closeSync(openSync('/dev/kvm', 'r+'));
    return null;
  } catch (err) {
    return `/dev/kvm is not usable (${(err as NodeJS.ErrnoException).code})`;
  }
}

/** A firecracker binary that says it is one: "Firecracker v1.16.1". */
function firecrackerProblem(binary: string | null): string | null {
  if (!binary) return 'no firecracker binary on PATH';
  const r = spawnSync(binary, ['--version'], { encoding: 'utf8', timeout: 10_000 });
  if (r.status !== 0 || !/^Firecracker v\d/m.test(r.stdout)) return `${binary} --version does not answer "Firecracker vX" (exit ${r.status}: ${(r.stderr || r.stdout).trim()})`;
  return null;
}

const FIRECRACKER = findOnPath('firecracker');
const KERNEL = process.env.BANGER_TEST_KERNEL;
const ROOTFS = process.env.BANGER_TEST_ROOTFS;
const WITH_SSH = process.env.BANGER_TEST_SSH === '1';

function skipReason(): string | null {
  const reasons = [
    privilegedSkipReason(),
    kvmProblem(),
    firecrackerProblem(FIRECRACKER),
    KERNEL ? (existsSync(KERNEL) ? null : `BANGER_TEST_KERNEL=${KERNEL} does not exist`) : 'BANGER_TEST_KERNEL is not set',
    ROOTFS ? (existsSync(ROOTFS) ? null : `BANGER_TEST_ROOTFS=${ROOTFS} does not exist`) : 'BANGER_TEST_ROOTFS is not set',
  ].filter((r): r is string => r !== null);
  return reasons.length > 0 ? reasons.join('; ') : null;
}

const skip = skipReason();
if (skip) console.warn(`skipping real-Firecracker tests: ${skip}`);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** What a booted guest prints on its serial console: a getty prompt or systemd's targets. */
const BOOTED = /login:|Reached target|Welcome to/;
const BOOT_TIMEOUT_MS = 90_000;

describe.skipIf(skip !== null)('a real Firecracker microVM', () => {
  let ns: HostNetns;
  let env: BangerEnv;

  const cli = (args: string[], timeoutMs = 60_000) => env.cli(args, { prefix: ns.prefix, timeoutMs });
  const json = <T = any>(args: string[], timeoutMs?: number): T => {
    const r = cli([...args, '--json'], timeoutMs);
    if (r.code !== 0) throw new Error(`banger ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
    return JSON.parse(r.stdout) as T;
  };

  beforeAll(() => {
    ns = new HostNetns();
    // The real binary, by its path: the helper puts the stand-in first on PATH.
    env = new BangerEnv({
      BANGER_BUILD_ID: 'real-firecracker-test',
      BANGER_FIRECRACKER: FIRECRACKER!,
      PATH: (process.env.PATH ?? '')
        .split(delimiter)
        .filter((d) => d !== STANDIN_DIR)
        .join(delimiter),
    });
    const r = cli(['image', 'add', 'real', '--kernel', KERNEL!, '--rootfs', ROOTFS!], 300_000);
    expect(r.code, r.stderr).toBe(0);
  }, 320_000);

  afterAll(async () => {
    await env?.cleanup();
    ns?.destroy();
  });

  it('boots the guest: the real binary runs, the console shows the boot with banger’s boot arguments', async () => {
    const vm = json(['vm', 'create', '--name', 'real', '--image', 'real', ...(WITH_SSH ? ['--wait-ssh'] : [])], 180_000);
    expect(vm.state).toBe('running');
    expect(realpathSync(readlinkSync(`/proc/${vm.pid}/exe`))).toBe(realpathSync(FIRECRACKER!));
    const argv = readCmdline(vm.pid)!;
    expect(argv[argv.indexOf('--id') + 1]).toBe(vm.id);
    expect(statSync(join(env.env.XDG_RUNTIME_DIR, 'banger', 'vms', `${vm.id}.sock`)).isSocket()).toBe(true);
    expect(ns.links()).toContain(vm.tap);

    let consoleText = '';
    const deadline = Date.now() + BOOT_TIMEOUT_MS;
    while (!BOOTED.test(consoleText) && Date.now() < deadline) {
      await sleep(500);
      consoleText = cli(['vm', 'logs', 'real']).stdout;
      expect(isAlive(vm.pid), `firecracker exited; console:\n${consoleText.slice(-3000)}`).toBe(true);
    }
    expect(consoleText, `no boot line within ${BOOT_TIMEOUT_MS / 1000} s; console:\n${consoleText.slice(-3000)}`).toMatch(BOOTED);
    // The kernel echoes its command line: banger's ip= argument reached it.
    expect(consoleText).toContain(`ip=${vm.guestIp}::${vm.hostIp}:255.255.255.252::eth0:off`);

    if (WITH_SSH) {
      const r = cli(['vm', 'ssh', 'real', '--', 'hostname'], 60_000);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout.trim()).toBe('real');
    }
  }, 240_000);

  it('stops gracefully: the guest reboots on Ctrl-Alt-Del, Firecracker exits, nothing is left', () => {
    const vm = json(['vm', 'show', 'real']);
    const t = Date.now();
    // A guest kernel without the i8042 keyboard driver never sees Ctrl-Alt-Del and is killed at 30 s.
    const stopped = json(['vm', 'stop', 'real', '--timeout', '30'], 90_000);
    const took = Date.now() - t;
    expect(stopped).toMatchObject({ state: 'stopped', pid: null, lastError: null });
    expect(took, 'Firecracker did not exit on Ctrl-Alt-Del (was killed at the timeout)').toBeLessThan(30_000);
    expect(isAlive(vm.pid)).toBe(false);
    expect(existsSync(join(env.env.XDG_RUNTIME_DIR, 'banger', 'vms', `${vm.id}.sock`))).toBe(false);
    expect(ns.links()).not.toContain(vm.tap);
    expect(ns.rules().filter((r) => r.includes(`banger:${vm.id}`))).toEqual([]);
    expect(ns.exec(['pgrep', '-f', `--id ${vm.id}`], { allowFail: true }).trim()).toBe('');
    expect(cli(['vm', 'rm', 'real']).code).toBe(0);
  }, 120_000);
});
