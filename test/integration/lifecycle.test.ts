// The VM lifecycle end to end: the built CLI, a real daemon inside a throwaway network namespace
// (real TAPs and iptables rules there), the copy root disk for real, and the Firecracker
// stand-in speaking the real API.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { BangerEnv, makeImageFiles, isAlive } from '../helpers/banger-env.js';
import { HostNetns, privilegedSkipReason } from '../helpers/netns.js';
import { readCmdline } from '../../src/firecracker/proc.js';
import { until } from '../helpers/wait.js';

const skip = privilegedSkipReason();
if (skip) console.warn(`skipping lifecycle tests: ${skip}`);



describe.skipIf(skip !== null)('VM lifecycle against the Firecracker stand-in', () => {
  let ns: HostNetns;
  let env: BangerEnv;
  let record: string;

  const cli = (args: string[], extra: Record<string, string> = {}) => env.cli(args, { prefix: ns.prefix, env: extra });
  const json = <T = any>(args: string[], extra: Record<string, string> = {}) => {
    const r = cli([...args, '--json'], extra);
    if (r.code !== 0) throw new Error(`banger ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
    return JSON.parse(r.stdout) as T;
  };
  /** Restarts the daemon with stand-in behaviour switches in its environment. */
  const daemonWith = (extra: Record<string, string>) => {
    cli(['daemon', 'stop']);
    const r = cli(['daemon', 'start'], extra);
    expect(r.code, r.stderr).toBe(0);
  };
  const requests = () =>
    existsSync(record)
      ? readFileSync(record, 'utf8')
          .trim()
          .split('\n')
          .filter(Boolean)
          .map((l) => JSON.parse(l))
      : [];
  const hostHoldsNothingOf = (vm: any) => {
    expect(ns.links()).not.toContain(vm.tap);
    expect(ns.rules().filter((r) => r.includes(`banger:${vm.id}`))).toEqual([]);
    expect(existsSync(join(env.env.XDG_RUNTIME_DIR, 'banger', 'vms', `${vm.id}.sock`))).toBe(false);
  };

  beforeAll(() => {
    ns = new HostNetns();
    env = new BangerEnv({ BANGER_BUILD_ID: 'lifecycle-test' });
    record = join(env.dir, 'requests.ndjson');
    env.env.FC_STANDIN_RECORD = record;
    const files = makeImageFiles(join(env.dir, 'src'), 16);
    const r = cli(['image', 'add', 'base', '--kernel', files.kernel, '--rootfs', files.rootfs, '--initrd', files.initrd, '--boot-args', 'quiet']);
    expect(r.code, r.stderr).toBe(0);
  });

  afterAll(async () => {
    await env?.cleanup();
    ns?.destroy();
  });

  it('creates and starts a VM: the real pid, the exact API calls, a TAP and NAT rules', () => {
    const vm = json(['vm', 'create', '--name', 'dev', '--image', 'base', '--vcpus', '2', '--memory', '256']);
    expect(vm.state).toBe('running');
    expect(vm.pid).toBeGreaterThan(0);
    const cmdline = readCmdline(vm.pid)!;
    expect(cmdline.join(' ')).toContain('fc-standin.js');
    expect(cmdline).toContain('--id');
    expect(cmdline[cmdline.indexOf('--id') + 1]).toBe(vm.id);
    const sock = join(env.env.XDG_RUNTIME_DIR, 'banger', 'vms', `${vm.id}.sock`);
    expect(cmdline[cmdline.indexOf('--api-sock') + 1]).toBe(sock);

    const calls = requests().map((r) => `${r.method} ${r.path}`);
    expect(calls.filter((c) => !c.startsWith('GET /'))).toEqual([
      'PUT /machine-config',
      'PUT /boot-source',
      'PUT /drives/rootfs',
      'PUT /network-interfaces/eth0',
      'PUT /actions',
    ]);
    const bodies = Object.fromEntries(requests().filter((r) => r.method === 'PUT').map((r) => [r.path, r.body]));
    expect(bodies['/machine-config']).toEqual({ vcpu_count: 2, mem_size_mib: 256 });
    const image = json(['image', 'show', 'base']);
    expect(bodies['/boot-source']).toEqual({
      kernel_image_path: image.kernelPath,
      initrd_path: image.initrdPath,
      boot_args: `quiet console=ttyS0 reboot=k panic=1 systemd.hostname=dev ip=${vm.guestIp}::${vm.hostIp}:255.255.255.252::eth0:off`,
    });
    expect(bodies['/drives/rootfs']).toEqual({
      drive_id: 'rootfs',
      path_on_host: join(env.stateDir, 'vms', vm.id, 'rootfs.ext4'),
      is_root_device: true,
      is_read_only: false,
    });
    expect(bodies['/network-interfaces/eth0']).toEqual({ iface_id: 'eth0', host_dev_name: vm.tap, guest_mac: vm.mac });
    expect(bodies['/actions']).toEqual({ action_type: 'InstanceStart' });

    expect(ns.links()).toContain(vm.tap);
    const addr = JSON.parse(ns.exec(['ip', '-j', 'addr', 'show', 'dev', vm.tap]))[0];
    expect(addr.addr_info.map((a: any) => `${a.local}/${a.prefixlen}`)).toContain(`${vm.hostIp}/30`);
    expect(ns.rules().filter((r) => r.includes(`banger:${vm.id}`))).toHaveLength(3);
    expect(ns.exec(['sysctl', '-n', 'net.ipv4.ip_forward']).trim()).toBe('1');
    expect(cli(['vm', 'logs', 'dev']).stdout.length).toBeGreaterThan(0);
  });

  it('shows progress phases with elapsed time on a TTY, and follows the console with logs -f', async () => {
    // script(1) gives the CLI a pseudo-terminal, as a user's shell would.
    const shellQuote = (a: string) => `'${a.replace(/'/g, `'\\''`)}'`;
    const cmd = [process.execPath, join(process.cwd(), 'bin/banger'), 'vm', 'restart', 'dev'].map(shellQuote).join(' ');
    const r = env.cli([], { prefix: [...ns.prefix, 'script', '-qec', cmd, '/dev/null'], raw: true });
    expect(r.code, r.stdout).toBe(0);
    for (const phase of ['vmm.ctrl-alt-del', 'disk.attach', 'net.setup', 'vmm.spawn', 'vmm.configure', 'vmm.start']) {
      expect(r.stdout).toMatch(new RegExp(`${phase.replace('.', '\\.')}[^\\r]* \\d+\\.\\ds`));
    }
    const { spawn } = await import('node:child_process');
    const follow = spawn(ns.prefix[0], [...ns.prefix.slice(1), process.execPath, join(process.cwd(), 'bin/banger'), 'vm', 'logs', '-f', 'dev'], {
      env: env.env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let seen = '';
    follow.stdout.on('data', (d) => (seen += d));
    try {
      await until('console output', () => seen.length > 0, 5000);
    } finally {
      follow.kill('SIGINT');
    }
  });

  it('stops gracefully through Ctrl-Alt-Del and releases everything', () => {
    const vm = json(['vm', 'show', 'dev']);
    const t = Date.now();
    const stopped = json(['vm', 'stop', 'dev']);
    expect(Date.now() - t).toBeLessThan(5000);
    expect(stopped).toMatchObject({ state: 'stopped', pid: null, lastError: null });
    expect(isAlive(vm.pid)).toBe(false);
    expect(requests().at(-1)).toMatchObject({ method: 'PUT', path: '/actions', body: { action_type: 'SendCtrlAltDel' } });
    hostHoldsNothingOf(vm);
  });

  it('starts again and restarts with a new process, keeping its disk', () => {
    const started = json(['vm', 'start', 'dev']);
    expect(started.state).toBe('running');
    const restarted = json(['vm', 'restart', 'dev']);
    expect(restarted.state).toBe('running');
    expect(restarted.pid).not.toBe(started.pid);
    expect(isAlive(started.pid)).toBe(false);
    expect(ns.rules().filter((r) => r.includes(`banger:${started.id}`))).toHaveLength(3);
  });

  it('adopts a running VM after the daemon is SIGKILLed, with the same pid', async () => {
    const vm = json(['vm', 'show', 'dev']);
    const daemonPid = env.daemonPid()!;
    process.kill(daemonPid, 'SIGKILL');
    await until('daemon gone', () => !isAlive(daemonPid));
    expect(isAlive(vm.pid)).toBe(true);
    const after = json(['vm', 'show', 'dev']);
    expect(env.daemonPid()).not.toBe(daemonPid);
    expect(after).toMatchObject({ state: 'running', pid: vm.pid });
    // still watched: the adopted VM stops normally
    expect(json(['vm', 'stop', 'dev']).state).toBe('stopped');
    expect(isAlive(vm.pid)).toBe(false);
    hostHoldsNothingOf(vm);
  });

  it('kills the real pid when the guest ignores Ctrl-Alt-Del, after --timeout', () => {
    daemonWith({ FC_STANDIN_CTRLALTDEL: 'ignore' });
    const vm = json(['vm', 'start', 'dev']);
    const t = Date.now();
    const stopped = json(['vm', 'stop', 'dev', '--timeout', '1']);
    const took = Date.now() - t;
    expect(stopped.state).toBe('stopped');
    expect(took).toBeGreaterThanOrEqual(1000);
    expect(isAlive(vm.pid)).toBe(false);
    hostHoldsNothingOf(vm);
    // --force skips the wait
    const again = json(['vm', 'start', 'dev']);
    const t2 = Date.now();
    expect(json(['vm', 'stop', 'dev', '--force']).state).toBe('stopped');
    expect(Date.now() - t2).toBeLessThan(1000);
    expect(isAlive(again.pid)).toBe(false);
    expect(requests().at(-1)?.body?.action_type).not.toBe('SendCtrlAltDel');
  });

  it('notices a Firecracker that exits on its own within a second', async () => {
    daemonWith({ FC_STANDIN_CRASH_AFTER_MS: '300' });
    const vm = json(['vm', 'start', 'dev']);
    const crashed = await until('the VM in error', () => {
      const v = json(['vm', 'show', 'dev']);
      return v.state === 'error' ? v : null;
    }, 3000);
    expect(crashed.lastError).toMatch(/firecracker \(pid \d+\) exited with code 3/);
    expect(crashed.lastError).toMatch(/console: /);
    expect(crashed.pid).toBeNull();
    hostHoldsNothingOf(vm);
    daemonWith({});
    expect(json(['vm', 'start', 'dev'])).toMatchObject({ state: 'running', lastError: null });
    expect(json(['vm', 'stop', 'dev']).state).toBe('stopped');
  });

  const launchFaults: [string, Record<string, string>, RegExp][] = [
    ['spawn fails', { BANGER_FIRECRACKER: '/nonexistent/firecracker' }, /vmm\.spawn/],
    ['the socket never appears', { FC_STANDIN_NO_SOCKET: '1' }, /vmm\.spawn: .*did not answer on its API socket|vmm\.spawn/],
    ['a config call answers 400', { FC_STANDIN_FAIL: 'PUT /drives/rootfs' }, /vmm\.configure.*drives\/rootfs.*400/],
    ['InstanceStart fails', { FC_STANDIN_FAIL: 'PUT /actions' }, /vmm\.start.*400/],
  ];
  for (const [what, extra, pattern] of launchFaults) {
    it(`leaves the VM in error and nothing on the host when ${what}`, () => {
      daemonWith(extra);
      const before = json(['vm', 'show', 'dev']);
      const r = cli(['vm', 'start', 'dev']);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/^banger: starting VM dev: /);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      if (!extra.FC_STANDIN_NO_SOCKET) {
        const verbose = cli(['--verbose', 'vm', 'start', 'dev']);
        expect(verbose.stderr).toMatch(/\n  caused by: /);
      }
      expect(r.stderr).toMatch(pattern);
      const vm = json(['vm', 'show', 'dev']);
      expect(vm.state).toBe('error');
      expect(vm.pid).toBeNull();
      expect(vm.lastError).toMatch(pattern);
      hostHoldsNothingOf(vm);
      expect(ns.exec(['pgrep', '-f', `--id ${before.id}`], { allowFail: true }).trim()).toBe('');
    });
  }

  it('--wait-ssh waits for the SSH banner, and times out clearly when none comes', async () => {
    daemonWith({});
    const probe = json(['vm', 'create', '--name', 'sshy', '--image', 'base', '--no-start']);
    expect(cli(['vm', 'rm', 'sshy']).code).toBe(0);
    // Stand in for the guest's sshd: the guest address on the namespace's loopback, a server that
    // sends its banner only after a while.
    ns.exec(['ip', 'addr', 'add', `${probe.guestIp}/32`, 'dev', 'lo']);
    const { spawn } = await import('node:child_process');
    const server = spawn('ip', ['netns', 'exec', ns.name, process.execPath, '-e',
      `require('net').createServer((s) => setTimeout(() => s.end('SSH-2.0-OpenSSH_9.2p1 test\\r\\n'), 300)).listen(22, '${probe.guestIp}', () => console.log('listening'))`], { stdio: ['ignore', 'pipe', 'inherit'] });
    try {
      await new Promise<void>((resolve) => server.stdout!.once('data', () => resolve()));
      const vm = json(['vm', 'create', '--name', 'sshy', '--image', 'base', '--wait-ssh']);
      expect(vm.guestIp).toBe(probe.guestIp);
      expect(vm.state).toBe('running');
      expect(cli(['vm', 'rm', '--force', 'sshy']).code).toBe(0);
    } finally {
      server.kill('SIGKILL');
      ns.exec(['ip', 'addr', 'del', `${probe.guestIp}/32`, 'dev', 'lo']);
    }
    const t = Date.now();
    const r = cli(['vm', 'create', '--name', 'mute', '--image', 'base', '--wait-ssh', '--wait-ssh-timeout', '2']);
    expect(r.code).toBe(1);
    expect(Date.now() - t).toBeGreaterThanOrEqual(2000);
    expect(r.stderr).toMatch(/VM mute is running, but its SSH server did not answer .*no SSH banner from 172\.16\.\d+\.\d+:22 after 2\.\ds/);
    expect(cli(['vm', 'rm', '--force', 'mute']).code).toBe(0);
  });

  it('refuses a create when the address pool overlaps a host route, and changes nothing', () => {
    ns.exec(['ip', 'route', 'add', '172.16.9.0/24', 'via', ns.gatewayIp, 'dev', ns.uplink]);
    try {
      const before = json(['vm', 'ls']);
      const r = cli(['vm', 'create', '--name', 'clash', '--image', 'base', '--no-start']);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/172\.16\.9\.0\/24/);
      expect(r.stderr).toMatch(/BANGER_NET_POOL/);
      expect(json(['vm', 'ls'])).toEqual(before);
    } finally {
      ns.exec(['ip', 'route', 'del', '172.16.9.0/24']);
    }
  });

  it('refuses to remove a running VM without --force, and removes it with --force', () => {
    daemonWith({});
    const vm = json(['vm', 'start', 'dev']);
    const refused = cli(['vm', 'rm', 'dev']);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/VM "dev" is running; stop it first/);
    expect(cli(['vm', 'rm', '--force', 'dev']).code).toBe(0);
    expect(isAlive(vm.pid)).toBe(false);
    hostHoldsNothingOf(vm);
    expect(existsSync(join(env.stateDir, 'vms', vm.id))).toBe(false);
    expect(json(['vm', 'ls'])).toEqual([]);
  });
});
