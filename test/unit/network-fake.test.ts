import { describe, expect, it } from 'vitest';
import { FailedPreconditionError, HostCommandError } from '../../src/core/errors.js';
import { MemoryJournal } from '../../src/core/memory-journal.js';
import { parsePool, subnetForIndex, tapName } from '../../src/core/net.js';
import { ensureNat, listBangerRules, removeNat, removeRuleSpec } from '../../src/host/nat.js';
import { setupNetwork, teardownNetwork, type NetworkVm } from '../../src/host/network.js';
import { ensureIpForward, readIpForward } from '../../src/host/sysctl.js';
import { createTap, deleteTap, listBangerTaps, tapExists } from '../../src/host/tap.js';
import { checkPoolAgainstRoutes, detectUplink } from '../../src/host/uplink.js';
import { installFakeNet, type FakeNetOptions } from '../fakes/fake-net.js';
import { FakeRunner } from '../fakes/fake-runner.js';

const pool = parsePool('172.16.0.0/16');

function vmAt(id: string, index: number, nat = true): NetworkVm {
  const s = subnetForIndex(pool, index);
  return { id, tap: tapName(id), hostIp: s.hostIp, guestIp: s.guestIp, nat };
}

function host(opts?: FakeNetOptions) {
  const runner = new FakeRunner();
  const net = installFakeNet(runner, opts);
  const journal = new MemoryJournal();
  return { runner, net, journal, ctx: { runner, journal } };
}

const A = vmAt('0123456789ab', 0);
const B = vmAt('ba9876543210', 1);

/** The three rules of a VM exactly as `iptables -S` prints them. */
function expectedLines(vm: NetworkVm, uplink: string) {
  const tag = `-m comment --comment "banger:${vm.id}"`;
  return {
    filter: [
      `-A FORWARD -i ${vm.tap} -o ${uplink} ${tag} -j ACCEPT`,
      `-A FORWARD -i ${uplink} -o ${vm.tap} -m conntrack --ctstate RELATED,ESTABLISHED ${tag} -j ACCEPT`,
    ],
    nat: [`-A POSTROUTING -s ${vm.guestIp}/32 -o ${uplink} ${tag} -j MASQUERADE`],
  };
}

describe('setupNetwork', () => {
  it('makes the TAP with the host address, turns on forwarding and adds the three rules', async () => {
    const { net, journal, ctx } = host();
    expect(await setupNetwork(ctx, A)).toEqual({ uplink: 'eth0' });

    expect(net.links.get(A.tap)).toMatchObject({ kind: 'tun', up: true, addresses: ['172.16.0.1/30'] });
    expect(net.ruleLines('filter')).toEqual(expectedLines(A, 'eth0').filter);
    expect(net.ruleLines('nat')).toEqual(expectedLines(A, 'eth0').nat);
    expect(net.sysctls.get('net.ipv4.ip_forward')).toBe('1');
    expect(journal.list(A.id).map((r) => [r.kind, r.handle, r.detail])).toEqual([
      ['tap', A.tap, ''],
      ['nat', 'eth0', '172.16.0.2'],
    ]);
  });

  it('changes nothing when applied a second time', async () => {
    const { runner, net, journal, ctx } = host();
    await setupNetwork(ctx, A);
    const before = { links: structuredClone([...net.links.values()]), rules: structuredClone(net.rules), journal: journal.listAll().length };
    runner.calls.length = 0;

    await setupNetwork(ctx, A);
    expect([...net.links.values()]).toEqual(before.links);
    expect(net.rules).toEqual(before.rules);
    expect(net.rules).toHaveLength(3);
    expect(journal.listAll()).toHaveLength(before.journal);
    const acting = runner.calls.map((c) => c.join(' ')).filter((c) => /^(ip tuntap|ip addr add|ip link set|iptables .* -A |sysctl -w)/.test(c));
    expect(acting).toEqual([]);
  });

  it('passes the TAP owner to ip tuntap add', async () => {
    const { runner, net, ctx } = host();
    await setupNetwork(ctx, A, { tapUser: 1000 });
    expect(runner.callsMatching('ip tuntap add')).toEqual([['ip', 'tuntap', 'add', 'dev', A.tap, 'mode', 'tap', 'user', '1000']]);
    expect(net.links.get(A.tap)?.user).toBe(1000);
  });

  it('gives a --no-nat VM a TAP and no rules, without needing a default route', async () => {
    const { runner, net, journal, ctx } = host({ defaultRoutes: [] });
    const vm = { ...A, nat: false };
    expect(await setupNetwork(ctx, vm)).toEqual({ uplink: null });
    expect(net.taps()).toEqual([A.tap]);
    expect(net.rules).toEqual([]);
    expect(net.sysctls.get('net.ipv4.ip_forward')).toBe('0');
    expect(runner.callsMatching('iptables')).toEqual([]);
    expect(journal.list(A.id).map((r) => r.kind)).toEqual(['tap']);

    await teardownNetwork(ctx, { id: vm.id });
    expect(net.taps()).toEqual([]);
    expect(journal.listAll()).toEqual([]);
  });

  it('removes the TAP and empties the journal when adding a rule fails after the TAP exists', async () => {
    const { runner, net, journal, ctx } = host();
    runner.inject({ prefix: 'iptables -w -t filter -A FORWARD', nth: 2, stderr: 'iptables: Resource temporarily unavailable.' });
    const err = await setupNetwork(ctx, A).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Error);
    expect((err as Error).message).toMatch(/^adding NAT rules for 172\.16\.0\.2 out of eth0: iptables -w -t filter -A FORWARD .* exited 1: iptables: Resource temporarily unavailable\.$/);
    expect(runner.callsMatching('iptables -w -t nat -A')).toHaveLength(1);
    expect(net.taps()).toEqual([]);
    expect(net.rules).toEqual([]);
    expect(journal.listAll()).toEqual([]);
  });

  it('rolls back the TAP when enabling forwarding fails', async () => {
    const { runner, net, journal, ctx } = host();
    runner.inject({ prefix: 'sysctl -w', stderr: 'sysctl: permission denied on key "net.ipv4.ip_forward"' });
    await expect(setupNetwork(ctx, A)).rejects.toThrow(/^enabling net\.ipv4\.ip_forward: sysctl -w/);
    expect(net.taps()).toEqual([]);
    expect(journal.listAll()).toEqual([]);
  });

  it('reports both the failure and a failed rollback, and keeps the journal entry it could not undo', async () => {
    const { runner, net, journal, ctx } = host();
    runner.inject({ prefix: 'ip link set', stderr: 'RTNETLINK answers: Operation not permitted' });
    runner.inject({ prefix: 'ip link del', stderr: 'RTNETLINK answers: Operation not permitted' });
    const err = await setupNetwork(ctx, A).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AggregateError);
    expect((err as AggregateError).message).toMatch(/creating tap bg0123456789ab: ip link set .*; and network setup of vm 0123456789ab rollback failed: tap.create: deleting tap/);
    expect(net.taps()).toEqual([A.tap]);
    expect(journal.list(A.id).map((r) => r.kind)).toEqual(['tap']);

    // The next teardown finishes the job from the journal.
    await teardownNetwork(ctx, { id: A.id });
    expect(net.taps()).toEqual([]);
    expect(journal.listAll()).toEqual([]);
  });

  it('fails before making anything when NAT has no default route', async () => {
    const { net, journal, ctx } = host({ defaultRoutes: [], links: ['lo', 'eth0'] });
    const err = await setupNetwork(ctx, A).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(FailedPreconditionError);
    expect((err as Error).message).toMatch(/NAT needs a default route.*set BANGER_UPLINK.*--no-nat/);
    expect(net.taps()).toEqual([]);
    expect(journal.listAll()).toEqual([]);
  });

  it('uses BANGER_UPLINK over the default route', async () => {
    const { net, ctx } = host({ links: ['lo', 'eth0', 'wan0'] });
    expect(await setupNetwork(ctx, A, { uplink: 'wan0' })).toEqual({ uplink: 'wan0' });
    expect(net.ruleLines('nat')).toEqual(expectedLines(A, 'wan0').nat);
  });

  it('refuses a BANGER_UPLINK that names no interface, changing nothing', async () => {
    const { net, journal, ctx } = host();
    const err = await setupNetwork(ctx, A, { uplink: 'wan9' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(FailedPreconditionError);
    expect((err as Error).message).toMatch(/BANGER_UPLINK names interface wan9, which does not exist \(Device "wan9" does not exist\.\)/);
    expect(net.taps()).toEqual([]);
    expect(journal.listAll()).toEqual([]);
  });

  it('keeps two VMs apart: distinct /30s and separate rules', async () => {
    const { net, ctx } = host();
    await setupNetwork(ctx, A);
    await setupNetwork(ctx, B);
    expect(net.links.get(A.tap)?.addresses).toEqual(['172.16.0.1/30']);
    expect(net.links.get(B.tap)?.addresses).toEqual(['172.16.0.5/30']);
    expect(net.rulesOf(A.id)).toHaveLength(3);
    expect(net.rulesOf(B.id)).toHaveLength(3);

    await teardownNetwork(ctx, { id: A.id });
    expect(net.taps()).toEqual([B.tap]);
    expect(net.rulesOf(A.id)).toEqual([]);
    expect(net.ruleLines('nat')).toEqual(expectedLines(B, 'eth0').nat);
    expect(net.ruleLines('filter')).toEqual(expectedLines(B, 'eth0').filter);
  });
});

describe('teardownNetwork', () => {
  it('removes the rules, then the TAP, and forgets both; forwarding stays on', async () => {
    const { runner, net, journal, ctx } = host();
    await setupNetwork(ctx, A);
    runner.calls.length = 0;
    await teardownNetwork(ctx, A);
    expect(net.taps()).toEqual([]);
    expect(net.rules).toEqual([]);
    expect(journal.listAll()).toEqual([]);
    expect(net.sysctls.get('net.ipv4.ip_forward')).toBe('1');
    const acts = runner.calls.map((c) => c.join(' ')).filter((c) => / -D |ip link del/.test(c));
    expect(acts.at(-1)).toBe(`ip link del dev ${A.tap}`);
    expect(acts.slice(0, -1)).toHaveLength(3);
  });

  it('succeeds when everything is already gone', async () => {
    const { net, ctx } = host();
    await teardownNetwork(ctx, A);
    await setupNetwork(ctx, A);
    await teardownNetwork(ctx, A);
    await teardownNetwork(ctx, { ...A, uplink: 'eth0' });
    expect(net.taps()).toEqual([]);
  });

  it('works from the journal alone after the default route moved to another interface', async () => {
    const { net, journal, ctx } = host({ links: ['lo', 'eth0', 'wlan0'] });
    await setupNetwork(ctx, A);
    net.defaultRoutes = [{ dst: 'default', gateway: '10.0.0.1', dev: 'wlan0', flags: [] }];
    await teardownNetwork(ctx, { id: A.id });
    expect(net.rules).toEqual([]);
    expect(net.taps()).toEqual([]);
    expect(journal.listAll()).toEqual([]);
  });

  it('removes rules of the uplink on the VM record even without a journal entry', async () => {
    const { runner, net, journal, ctx } = host();
    await setupNetwork(ctx, A);
    journal.forget(A.id, 'nat', 'eth0');
    await teardownNetwork(ctx, { id: A.id, guestIp: A.guestIp, uplink: 'eth0' });
    expect(net.rules).toEqual([]);
    expect(runner.callsMatching('iptables -w -t nat -D')).toHaveLength(1);
  });

  it('still removes the other rules and the TAP when one removal fails, and keeps that entry for later', async () => {
    const { runner, net, journal, ctx } = host();
    await setupNetwork(ctx, A);
    runner.inject({ prefix: 'iptables -w -t nat -D', stderr: 'iptables: Resource temporarily unavailable.' });
    const err = await teardownNetwork(ctx, A).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AggregateError);
    expect((err as AggregateError).errors).toHaveLength(1);
    expect((err as Error).message).toMatch(/^network teardown of vm 0123456789ab failed: nat.remove: removing NAT rules for 172\.16\.0\.2 out of eth0: .*Resource temporarily unavailable/);
    expect(net.ruleLines('filter')).toEqual([]);
    expect(net.ruleLines('nat')).toEqual(expectedLines(A, 'eth0').nat);
    expect(net.taps()).toEqual([]);
    expect(journal.list(A.id).map((r) => [r.kind, r.handle])).toEqual([['nat', 'eth0']]);

    await teardownNetwork(ctx, { id: A.id });
    expect(net.rules).toEqual([]);
    expect(journal.listAll()).toEqual([]);
  });

  it('reports every failed step together', async () => {
    const { runner, ctx } = host();
    await setupNetwork(ctx, A);
    runner.inject({ prefix: 'iptables -w -t nat -D', stderr: 'nat broke' });
    runner.inject({ prefix: 'ip link del', stderr: 'RTNETLINK answers: Device or resource busy' });
    const err = (await teardownNetwork(ctx, A).catch((e: unknown) => e)) as AggregateError;
    expect(err.errors.map((e: Error) => e.message.split(':')[0])).toEqual(['nat.remove', 'tap.delete']);
  });
});

describe('host pieces', () => {
  it('creates only the missing parts of a half-made TAP', async () => {
    const { runner, net } = host();
    await runner.run(['ip', 'tuntap', 'add', 'dev', 'bg01', 'mode', 'tap']);
    runner.calls.length = 0;
    await createTap(runner, { name: 'bg01', hostIp: '172.16.0.1' });
    expect(runner.calls.map((c) => c.join(' '))).toEqual(['ip -d -j addr show dev bg01', 'ip addr add 172.16.0.1/30 dev bg01', 'ip link set dev bg01 up']);
    expect(net.links.get('bg01')).toMatchObject({ up: true, addresses: ['172.16.0.1/30'] });
  });

  it('refuses to take over an interface that is not a TAP', async () => {
    const { runner } = host({ links: ['lo', 'eth0', 'bg01'] });
    await expect(createTap(runner, { name: 'bg01', hostIp: '172.16.0.1' })).rejects.toThrow(/exists but is not a TAP \(veth\)/);
  });

  it('treats an absent TAP as deleted but reports a real failure', async () => {
    const { runner } = host();
    await deleteTap(runner, 'bg01');
    await createTap(runner, { name: 'bg01', hostIp: '172.16.0.1' });
    runner.inject({ prefix: 'ip link del', stderr: 'RTNETLINK answers: Operation not permitted' });
    await expect(deleteTap(runner, 'bg01')).rejects.toThrow(HostCommandError);
    expect(await tapExists(runner, 'bg01')).toBe(true);
  });

  it('lists only interfaces named bg + hex', async () => {
    const { runner } = host({ links: ['lo', 'eth0', 'bgp0', 'bg0a1b', 'bridge0'] });
    await createTap(runner, { name: 'bgff', hostIp: '172.16.0.5' });
    expect(await listBangerTaps(runner)).toEqual(['bg0a1b', 'bgff']);
  });

  it('writes ip_forward only when it is 0', async () => {
    const off = host();
    expect(await ensureIpForward(off.runner)).toBe(true);
    expect(await readIpForward(off.runner)).toBe(true);
    const on = host({ ipForward: 1 });
    expect(await ensureIpForward(on.runner)).toBe(false);
    expect(on.runner.callsMatching('sysctl -w')).toEqual([]);
  });

  it('removes duplicates of a rule and treats probe errors as failures', async () => {
    const { runner, net } = host();
    const target = { id: A.id, guestIp: A.guestIp, tap: A.tap };
    await ensureNat(runner, target, 'eth0');
    await runner.run(['iptables', '-w', '-t', 'nat', '-A', 'POSTROUTING', '-s', '172.16.0.2/32', '-o', 'eth0', '-m', 'comment', '--comment', `banger:${A.id}`, '-j', 'MASQUERADE']);
    expect(net.ruleLines('nat')).toHaveLength(2);
    await removeNat(runner, target, 'eth0');
    expect(net.rules).toEqual([]);

    runner.inject({ prefix: 'iptables -w -t nat -C', exitCode: 4, stderr: 'iptables v1.8.9 (nf_tables): Could not fetch rule set generation id: Permission denied (you must be root)' });
    await expect(ensureNat(runner, target, 'eth0')).rejects.toThrow(/exited 4/);
  });

  it('finds every tagged rule for gc and removes each by its spec', async () => {
    const { runner, net } = host();
    await ensureNat(runner, { id: A.id, guestIp: A.guestIp, tap: A.tap }, 'eth0');
    await ensureNat(runner, { id: B.id, guestIp: B.guestIp, tap: B.tap }, 'eth0');
    await runner.run(['iptables', '-w', '-t', 'filter', '-A', 'FORWARD', '-i', 'docker0', '-j', 'ACCEPT']);
    const found = await listBangerRules(runner);
    expect(found.map((r) => `${r.table} ${r.vmId}`)).toEqual([`filter ${A.id}`, `filter ${A.id}`, `filter ${B.id}`, `filter ${B.id}`, `nat ${A.id}`, `nat ${B.id}`]);
    for (const r of found.filter((x) => x.vmId === A.id)) await removeRuleSpec(runner, r.spec);
    expect(net.rulesOf(A.id)).toEqual([]);
    expect(net.rulesOf(B.id)).toHaveLength(3);
    expect(net.ruleLines('filter')).toContain('-A FORWARD -i docker0 -j ACCEPT');
  });

  it('rejects a pool that overlaps a host route, naming the route and the fix', async () => {
    const { runner } = host({ routes: [{ dst: '172.16.8.0/22', dev: 'wg0', protocol: 'kernel', scope: 'link', flags: [] }] });
    const err = await checkPoolAgainstRoutes(runner, pool).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(FailedPreconditionError);
    expect((err as Error).message).toBe(
      'address pool 172.16.0.0/16 overlaps host route 172.16.8.0/22 dev wg0; set BANGER_NET_POOL to a range no route uses (for example 10.213.0.0/16)',
    );
    await checkPoolAgainstRoutes(runner, parsePool('10.213.0.0/16'));
  });

  it('does not count running VMs’ own TAP routes as overlaps', async () => {
    const { runner, ctx } = host();
    await setupNetwork(ctx, A);
    const routes = (await runner.run(['ip', '-j', 'route', 'show'])).stdout;
    expect(routes).toContain('"dev":"bg0123456789ab"');
    await checkPoolAgainstRoutes(runner, pool);
  });

  it('detects the lowest-metric default route as the uplink', async () => {
    const { runner } = host({
      defaultRoutes: [
        { dst: 'default', gateway: '10.0.0.1', dev: 'wlan0', metric: 600, flags: [] },
        { dst: 'default', gateway: '10.1.0.1', dev: 'enp3s0', metric: 100, flags: [] },
      ],
    });
    expect(await detectUplink(runner)).toBe('enp3s0');
    await expect(detectUplink(runner, 'eth0; rm')).rejects.toThrow(/is not an interface name/);
  });
});
