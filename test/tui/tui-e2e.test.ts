// banger tui as a user runs it: the built CLI in a real terminal (tmux, 80x24) inside a
// throwaway network namespace, a real daemon, the Firecracker stand-in; VMs created, started,
// stopped and deleted by keys, an ssh session handed the terminal, the daemon killed under it.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { BANGER, BangerEnv, isAlive, makeImageFiles } from '../helpers/banger-env.js';
import { HostNetns, privilegedSkipReason } from '../helpers/netns.js';
import type { VmView } from '../../src/core/models.js';

function skipReason(): string | null {
  const base = privilegedSkipReason();
  if (base) return base;
  if (spawnSync('tmux', ['-V']).status !== 0) return 'tmux is not installed';
  if (!existsSync(join(BANGER, '../../dist/tui.js'))) return 'dist/tui.js is missing; run npm run build';
  return null;
}

const skip = skipReason();
if (skip) console.warn(`skipping the TUI end-to-end test: ${skip}`);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe.skipIf(skip !== null)('banger tui in a real terminal', () => {
  let ns: HostNetns;
  let env: BangerEnv;
  /** A tmux server of its own, so that cleanup can kill it whole. */
  const server = `bgtui${process.pid}`;
  const tmux = (...args: string[]) => {
    const r = spawnSync('tmux', ['-L', server, ...args], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`tmux ${args.join(' ')} exited ${r.status}: ${r.stderr}`);
    return r.stdout;
  };
  const screen = () => tmux('capture-pane', '-p', '-t', 'tui');
  const waitForScreen = async (what: string, predicate: (s: string) => boolean, timeoutMs = 10_000) => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const s = screen();
      if (predicate(s)) return s;
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; the screen:\n${s}`);
      await sleep(50);
    }
  };
  /** Sends keys one by one (tmux names: Enter, Escape, Down; or a character). */
  const press = async (...keys: string[]) => {
    for (const k of keys) {
      tmux('send-keys', '-t', 'tui', k);
      await sleep(60);
    }
  };
  const cli = (args: string[]) => env.cli(args, { prefix: ns.prefix });
  const vms = () => {
    const r = cli(['vm', 'ls', '--json']);
    if (r.code !== 0) throw new Error(r.stderr);
    return JSON.parse(r.stdout) as VmView[];
  };
  const rowOf = (s: string, name: string) => s.split('\n').find((l) => new RegExp(`^[ ›*] ${name} `).test(l)) ?? '';
  const sshLog = () => join(env.dir, 'ssh.log');

  beforeAll(() => {
    ns = new HostNetns();
    env = new BangerEnv({ BANGER_BUILD_ID: 'tui-e2e' });
    const bin = join(env.dir, 'bin');
    mkdirSync(bin);
    // An ssh stand-in: records its argv and a line typed into it, then exits 3.
    writeFileSync(
      join(bin, 'ssh'),
      `#!/bin/sh\necho "argv: $*" >> '${sshLog()}'\nprintf 'ssh stand-in, type a line: '\nread line\necho "typed: $line" >> '${sshLog()}'\nexit 3\n`,
    );
    chmodSync(join(bin, 'ssh'), 0o755);
    env.env.PATH = `${bin}:${env.env.PATH}`;
    const files = makeImageFiles(join(env.dir, 'img'), 16);
    const r = cli(['image', 'add', 'base', '--kernel', files.kernel, '--rootfs', files.rootfs]);
    expect(r.code, r.stderr).toBe(0);
    expect(cli(['vm', 'create', '--name', 'web', '--image', 'base', '--no-start']).code).toBe(0);
    // Exactly the test's environment (no CI variables: Ink would then print only at exit).
    const vars = Object.entries({ ...env.env, TERM: 'xterm-256color' }).map(([k, v]) => `${k}=${v}`);
    const command = ['ip', 'netns', 'exec', ns.name, 'env', '-i', ...vars, process.execPath, BANGER, 'tui'];
    const quoted = command.map((a) => `'${a.replaceAll("'", `'\\''`)}'`).join(' ');
    tmux('new-session', '-d', '-s', 'tui', '-x', '80', '-y', '24', `${quoted}; echo "TUI EXIT $?"; sleep 600`);
  });

  afterAll(async () => {
    spawnSync('tmux', ['-L', server, 'kill-server']);
    await env?.cleanup();
    ns?.destroy();
  });

  it('shows the VM table in 80x24', async () => {
    const s = await waitForScreen('the table', (s) => s.includes('● live') && s.includes('web'));
    expect(s).toMatch(/NAME\s+STATE\s+IP\s+VCPUS\s+MEMORY\s+IMAGE\s+AGE/);
    expect(rowOf(s, 'web')).toMatch(/stopped\s+172\.16\.0\.\d+\s+1\s+512 MiB\s+base/);
    expect(s).toContain('s start');
    for (const line of s.split('\n')) expect(line.length).toBeLessThanOrEqual(80);
  });

  it('creates a VM with the form and starts it (running for real: the stand-in pid, a TAP)', async () => {
    await press('n');
    await waitForScreen('the form', (s) => s.includes('create a VM') && s.includes('‹ base ›'));
    await press('D');
    await waitForScreen('the name error', (s) => s.includes('✗ use a-z, 0-9 and dashes'));
    await press('BSpace', 'd', 'e', 'v', 'Tab', 'Tab', 'BSpace', '2', 'Enter');
    const s = await waitForScreen('dev running', (s) => /running/.test(rowOf(s, 'dev')) && s.includes('✓ created dev in'));
    expect(rowOf(s, 'dev')).toMatch(/dev\s+running\s+172\.16\.0\.\d+\s+2\s+512 MiB/);
    const dev = vms().find((v) => v.name === 'dev')!;
    expect(dev).toMatchObject({ state: 'running', vcpus: 2 });
    expect(isAlive(dev.pid!)).toBe(true);
    expect(ns.links()).toContain(dev.tap);
    // The details pane shows it, with its pid and the console's last lines.
    await waitForScreen('the console of dev', (s) => s.includes(`pid ${dev.pid}`) && s.includes('dev login:'));
  });

  it('stops and starts the selected VM with x and s', async () => {
    await press('x');
    await waitForScreen('dev stopped', (s) => /stopped/.test(rowOf(s, 'dev')) && s.includes('✓ stopped dev in'));
    const stopped = vms().find((v) => v.name === 'dev')!;
    expect(stopped).toMatchObject({ state: 'stopped', pid: null });
    expect(ns.links()).not.toContain(stopped.tap);
    await press('s');
    await waitForScreen('dev running again', (s) => /running/.test(rowOf(s, 'dev')) && s.includes('✓ started dev in'));
    expect(vms().find((v) => v.name === 'dev')!.state).toBe('running');
  });

  it('lends the terminal to ssh and takes it back', async () => {
    await press('e');
    await waitForScreen('the ssh stand-in', (s) => s.includes('ssh stand-in, type a line:') && !s.includes('● live'));
    // What is typed now goes to ssh, not to the TUI (x would stop the VM).
    await press('x', 'y', 'z', 'Enter');
    const s = await waitForScreen('the TUI back', (s) => s.includes('● live') && s.includes('ssh session on dev ended (exit 3)'));
    expect(rowOf(s, 'dev')).toMatch(/running/);
    const log = readFileSync(sshLog(), 'utf8');
    const dev = vms().find((v) => v.name === 'dev')!;
    expect(log).toContain(`root@${dev.guestIp}`);
    expect(log).toContain(join(env.dataDir, 'ssh', 'id_ed25519'));
    expect(log).toContain('typed: xyz');
    expect(dev.state).toBe('running');
  });

  it("follows the VM's console on the logs screen", async () => {
    await press('l');
    const s = await waitForScreen('the logs', (s) => s.includes('console of dev') && s.includes('Linux version'));
    expect(s).toContain('following');
    await press('Escape');
    await waitForScreen('the table', (s) => s.includes('NAME'));
  });

  it('survives the daemon being killed: reconnecting, then live again with the VMs as they are', async () => {
    const pid = env.daemonPid()!;
    process.kill(pid, 'SIGKILL');
    await waitForScreen('the reconnecting banner', (s) => s.includes('reconnecting'));
    // The TUI starts a new daemon, as any banger command does; it adopts the running VM.
    const s = await waitForScreen('live again', (s) => s.includes('● live') && !s.includes('reconnecting'), 20_000);
    expect(env.daemonPid()).not.toBe(pid);
    expect(rowOf(s, 'dev')).toMatch(/running/);
    expect(rowOf(s, 'web')).toMatch(/stopped/);
  });

  it('deletes a running VM after confirmation', async () => {
    const dev = vms().find((v) => v.name === 'dev')!;
    await press('d');
    await waitForScreen('the confirmation', (s) => s.includes('Delete VM dev and its disk?') && s.includes('it will be stopped first'));
    await press('y');
    await waitForScreen('dev gone', (s) => rowOf(s, 'dev') === '' && s.includes('✓ deleted dev in'));
    expect(vms().map((v) => v.name)).toEqual(['web']);
    expect(isAlive(dev.pid!)).toBe(false);
    expect(ns.links()).not.toContain(dev.tap);
    expect(ns.rules().filter((r) => r.includes(`banger:${dev.id}`))).toEqual([]);
  });

  it('q quits, exits 0 and gives the screen back', async () => {
    await press('q');
    const s = await waitForScreen('the shell', (s) => s.includes('TUI EXIT'));
    expect(s).toContain('TUI EXIT 0');
    expect(s).not.toContain('● live');
  });
});
