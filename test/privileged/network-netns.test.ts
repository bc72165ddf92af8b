// Real TAPs, iptables rules and ip_forward, each test inside its own throwaway network namespace
// with a private uplink and default route, so nothing reaches the host's own network state.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FailedPreconditionError, HostCommandError } from '../../src/core/errors.js';
import { MemoryJournal } from '../../src/core/memory-journal.js';
import { parseIpLinks, parsePool, subnetForIndex, tapName } from '../../src/core/net.js';
import type { RunOptions, RunResult, Runner, SpawnOptions, SpawnedProcess } from '../../src/core/ports.js';
import { listBangerRules, removeRuleSpec } from '../../src/host/nat.js';
import { setupNetwork, teardownNetwork, type NetworkVm } from '../../src/host/network.js';
import { listBangerTaps } from '../../src/host/tap.js';
import { checkPoolAgainstRoutes, detectUplink } from '../../src/host/uplink.js';
import { NetnsRunner } from '../fakes/netns-runner.js';

function tool(argv: string[]): string {
  return execFileSync(argv[0], argv.slice(1), { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

/** Why these tests cannot run here, or null when they can. */
function skipReason(): string | null {
  if (process.platform !== 'linux') return 'not Linux';
  if (process.getuid?.() !== 0) return 'not root (network namespaces need CAP_SYS_ADMIN)';
  const probe = `bgprobe-${process.pid}`;
  try {
    tool(['ip', 'netns', 'add', probe]);
  } catch (err) {
    return `ip netns is unavailable: ${(err as Error).message.split('\n')[0]}`;
  }
  try {
    tool(['ip', 'netns', 'exec', probe, 'iptables', '-w', '-S']);
  } catch (err) {
    return `iptables does not work inside a namespace: ${(err as Error).message.split('\n')[0]}`;
  } finally {
    tool(['ip', 'netns', 'del', probe]);
  }
  return null;
}

const reason = skipReason();
if (reason) console.warn(`skipping privileged network tests: ${reason}`);

/** Fails the first command that matches, then passes everything through. */
class FailFirstRunner implements Runner {
  private hasFailed = false;
  constructor(
    private readonly inner: Runner,
    private readonly matches: (argv: string[]) => boolean,
  ) {}
  run(argv: string[], options?: RunOptions): Promise<RunResult> {
    if (!this.hasFailed && this.matches(argv)) {
      this.hasFailed = true;
      return Promise.reject(new HostCommandError({ argv, exitCode: 1, stderr: 'injected fault' }));
    }
    return this.inner.run(argv, options);
  }
  spawn(argv: string[], options?: SpawnOptions): SpawnedProcess {
    return this.inner.spawn(argv, options);
  }
}

const pool = parsePool('172.16.0.0/16');
const UPLINK = 'up0';

function newVm(index: number, nat = true): NetworkVm {
  const id = randomBytes(6).toString('hex');
  const s = subnetForIndex(pool, index);
  return { id, tap: tapName(id), hostIp: s.hostIp, guestIp: s.guestIp, nat };
}

describe.skipIf(reason !== null)('network setup inside a network namespace', () => {
  let ns = '';
  let runner: NetnsRunner;
  let journal: MemoryJournal;
  let uplinkKind = '';
  const hostForwardBefore = reason ? '' : readFileSync('/proc/sys/net/ipv4/ip_forward', 'utf8');

  beforeEach(async () => {
    ns = `bgtest-${process.pid}-${randomBytes(3).toString('hex')}`;
    tool(['ip', 'netns', 'add', ns]);
    runner = new NetnsRunner(ns);
    journal = new MemoryJournal();
    try {
      // A dummy uplink when the kernel has the module; else a veth pair with both ends in here.
      const dummy = await runner.run(['ip', 'link', 'add', UPLINK, 'type', 'dummy'], { check: false });
      if (dummy.exitCode === 0) {
        uplinkKind = 'dummy';
      } else {
        uplinkKind = 'veth';
        await runner.run(['ip', 'link', 'add', UPLINK, 'type', 'veth', 'peer', 'name', 'up0peer']);
        await runner.run(['ip', 'link', 'set', 'up0peer', 'up']);
      }
      await runner.run(['ip', 'addr', 'add', '198.51.100.2/24', 'dev', UPLINK]);
      await runner.run(['ip', 'link', 'set', UPLINK, 'up']);
      await runner.run(['ip', 'route', 'add', 'default', 'via', '198.51.100.1', 'dev', UPLINK]);
      // A new namespace may copy the host's forwarding setting: start from off, so that turning it on is banger's doing.
      await runner.run(['sysctl', '-qw', 'net.ipv4.ip_forward=0']);
    } catch (err) {
      tool(['ip', 'netns', 'del', ns]);
      throw err;
    }
  });

  afterEach(() => {
    // Deleting the namespace destroys its TAPs and iptables rules with it.
    tool(['ip', 'netns', 'del', ns]);
    expect(tool(['ip', 'netns', 'list'])).not.toContain(ns);
  });

  async function sh(argv: string[]): Promise<string> {
    return (await runner.run(argv)).stdout;
  }

  async function ruleLines(): Promise<string[]> {
    const text = (await sh(['iptables', '-w', '-S'])) + (await sh(['iptables', '-w', '-t', 'nat', '-S']));
    return text.split('\n').filter((l) => l.startsWith('-A '));
  }

  function expectedLines(vm: NetworkVm): string[] {
    const tag = `-m comment --comment "banger:${vm.id}"`;
    return [
      `-A FORWARD -i ${vm.tap} -o ${UPLINK} ${tag} -j ACCEPT`,
      `-A FORWARD -i ${UPLINK} -o ${vm.tap} -m conntrack --ctstate RELATED,ESTABLISHED ${tag} -j ACCEPT`,
      `-A POSTROUTING -s ${vm.guestIp}/32 -o ${UPLINK} ${tag} -j MASQUERADE`,
    ];
  }

  async function expectEachRuleOnce(vm: NetworkVm): Promise<void> {
    const lines = await ruleLines();
    for (const want of expectedLines(vm)) expect(lines.filter((l) => l === want), want).toHaveLength(1);
    expect(lines.filter((l) => l.includes(`banger:${vm.id}`))).toHaveLength(3);
  }

  async function readForward(): Promise<string> {
    return (await sh(['cat', '/proc/sys/net/ipv4/ip_forward'])).trim();
  }

  async function links(): Promise<string[]> {
    return parseIpLinks(await sh(['ip', '-j', 'link', 'show'])).map((l) => l.name);
  }

  it('makes an up TAP with the host address, each rule exactly once, and turns on forwarding', async () => {
    const vm = newVm(0);
    expect(await readForward()).toBe('0');
    const started = performance.now();
    expect(await setupNetwork({ runner, journal }, vm)).toEqual({ uplink: UPLINK });
    console.info(`setupNetwork in a namespace (${uplinkKind} uplink): ${(performance.now() - started).toFixed(0)} ms`);

    const [tap] = parseIpLinks(await sh(['ip', '-d', '-j', 'addr', 'show', 'dev', vm.tap]));
    expect(tap).toEqual({ name: vm.tap, isUp: true, kind: 'tun', tunType: 'tap', addresses: [`${vm.hostIp}/30`] });
    await expectEachRuleOnce(vm);
    expect(await readForward()).toBe('1');
    expect(journal.list(vm.id).map((r) => `${r.kind} ${r.handle} ${r.detail}`)).toEqual([`tap ${vm.tap} `, `nat ${UPLINK} ${vm.guestIp}`]);
  });

  it('adds nothing when applied twice', async () => {
    const vm = newVm(0);
    await setupNetwork({ runner, journal }, vm);
    const before = await ruleLines();
    const started = performance.now();
    await setupNetwork({ runner, journal }, vm);
    console.info(`setupNetwork again (all present): ${(performance.now() - started).toFixed(0)} ms`);
    expect(await ruleLines()).toEqual(before);
    await expectEachRuleOnce(vm);
    const addrs = parseIpLinks(await sh(['ip', '-j', 'addr', 'show', 'dev', vm.tap]))[0].addresses;
    expect(addrs).toEqual([`${vm.hostIp}/30`]);
  });

  it('removes the TAP and every rule at teardown, leaving forwarding on', async () => {
    const vm = newVm(0);
    await setupNetwork({ runner, journal }, vm);
    const started = performance.now();
    await teardownNetwork({ runner, journal }, vm);
    console.info(`teardownNetwork in a namespace: ${(performance.now() - started).toFixed(0)} ms`);
    expect(await links()).not.toContain(vm.tap);
    expect((await ruleLines()).filter((l) => l.includes('banger:'))).toEqual([]);
    expect(journal.listAll()).toEqual([]);
    expect(await readForward()).toBe('1');
    // A second teardown finds nothing and succeeds.
    await teardownNetwork({ runner, journal }, { id: vm.id });
  });

  it('keeps two VMs on distinct /30s with separate rules', async () => {
    const a = newVm(0);
    const b = newVm(1);
    await setupNetwork({ runner, journal }, a);
    await setupNetwork({ runner, journal }, b);
    const addrOf = async (tap: string) => parseIpLinks(await sh(['ip', '-j', 'addr', 'show', 'dev', tap]))[0].addresses;
    expect(await addrOf(a.tap)).toEqual(['172.16.0.1/30']);
    expect(await addrOf(b.tap)).toEqual(['172.16.0.5/30']);
    await expectEachRuleOnce(a);
    await expectEachRuleOnce(b);
    expect((await listBangerTaps(runner)).sort()).toEqual([a.tap, b.tap].sort());

    await teardownNetwork({ runner, journal }, { id: a.id });
    expect(await links()).not.toContain(a.tap);
    expect(await links()).toContain(b.tap);
    expect((await ruleLines()).filter((l) => l.includes(`banger:${a.id}`))).toEqual([]);
    await expectEachRuleOnce(b);
  });

  it('leaves no TAP when the first rule fails to be added', async () => {
    const vm = newVm(0);
    const faulty = new FailFirstRunner(runner, (argv) => argv[0] === 'iptables' && argv.includes('-A'));
    await expect(setupNetwork({ runner: faulty, journal }, vm)).rejects.toThrow(/adding NAT rules .*injected fault/);
    expect(await links()).not.toContain(vm.tap);
    expect((await ruleLines()).filter((l) => l.includes('banger:'))).toEqual([]);
    expect(journal.listAll()).toEqual([]);
  });

  it('gives a --no-nat VM a TAP and no rules', async () => {
    const vm = newVm(2, false);
    expect(await setupNetwork({ runner, journal }, vm)).toEqual({ uplink: null });
    expect(await links()).toContain(vm.tap);
    expect(await ruleLines()).toEqual([]);
    expect(await readForward()).toBe('0');
    await teardownNetwork({ runner, journal }, vm);
    expect(await links()).not.toContain(vm.tap);
  });

  it('finds the uplink from the real default route and checks the pool against real routes', async () => {
    expect(await detectUplink(runner)).toBe(UPLINK);
    await expect(detectUplink(runner, 'nosuch0')).rejects.toThrow(FailedPreconditionError);
    await checkPoolAgainstRoutes(runner, pool);
    await runner.run(['ip', 'route', 'add', '172.16.4.0/24', 'via', '198.51.100.9', 'dev', UPLINK]);
    await expect(checkPoolAgainstRoutes(runner, pool)).rejects.toThrow(/overlaps host route 172\.16\.4\.0\/24 dev up0/);
    await runner.run(['ip', 'route', 'del', 'default']);
    await expect(detectUplink(runner)).rejects.toThrow(/NAT needs a default route/);
  });

  it('lists tagged rules from real iptables -S output and removes them by spec (gc)', async () => {
    const vm = newVm(0);
    await setupNetwork({ runner, journal }, vm);
    const found = await listBangerRules(runner);
    expect(found.map((r) => r.vmId)).toEqual([vm.id, vm.id, vm.id]);
    for (const r of found) await removeRuleSpec(runner, r.spec);
    expect(await ruleLines()).toEqual([]);
  });

  it('never touches the host: its ip_forward and links are as before', () => {
    expect(readFileSync('/proc/sys/net/ipv4/ip_forward', 'utf8')).toBe(hostForwardBefore);
    expect(parseIpLinks(tool(['ip', '-j', 'link', 'show'])).map((l) => l.name)).not.toContain(UPLINK);
  });
});
