import { describe, expect, it } from 'vitest';
import { FailedPreconditionError, InternalError, InvalidArgumentError } from '../../src/core/errors.js';
import {
  firstFreeIndex,
  iptablesAppendArgv,
  iptablesCheckArgv,
  iptablesDeleteArgv,
  kernelIpArg,
  macForGuestIp,
  natRules,
  parseDefaultUplink,
  parseIpLinks,
  parseIpRoutes,
  parsePool,
  parseTaggedRules,
  poolCapacity,
  poolOverlapsRoutes,
  splitIptablesLine,
  subnetForIndex,
  tapName,
} from '../../src/core/net.js';

describe('address pool', () => {
  it('parses a CIDR into its network and prefix', () => {
    expect(parsePool('172.16.0.0/16')).toEqual({ cidr: '172.16.0.0/16', network: '172.16.0.0', prefix: 16, base: 0xac100000 });
    expect(parsePool(' 10.0.0.0/8 ').cidr).toBe('10.0.0.0/8');
  });

  it('rejects a host address and names the network address to use instead', () => {
    expect(() => parsePool('172.16.0.1/16')).toThrow(InvalidArgumentError);
    expect(() => parsePool('172.16.0.1/16')).toThrow(/set BANGER_NET_POOL to 172\.16\.0\.0\/16/);
  });

  it('rejects prefixes outside /8 to /30', () => {
    expect(() => parsePool('10.0.0.0/7')).toThrow(/between \/8 and \/30/);
    expect(() => parsePool('10.0.0.0/31')).toThrow(/between \/8 and \/30/);
    expect(parsePool('10.0.0.0/30').prefix).toBe(30);
  });

  it('rejects text that is not an IPv4 CIDR', () => {
    for (const bad of ['', '172.16.0.0', '172.16.0.0/', '256.0.0.0/16', '172.16.0/16', '01.2.3.0/24', 'fd00::/64', '172.16.0.0/16/2', 'a.b.c.d/16']) {
      expect(() => parsePool(bad), bad).toThrow(InvalidArgumentError);
    }
  });

  it('holds one VM per /30', () => {
    expect(poolCapacity(parsePool('172.16.0.0/16'))).toBe(16384);
    expect(poolCapacity(parsePool('10.0.0.0/8'))).toBe(4194304);
    expect(poolCapacity(parsePool('192.168.7.0/24'))).toBe(64);
    expect(poolCapacity(parsePool('192.168.7.4/30'))).toBe(1);
  });

  it('gives each index its own /30 with the host first and the guest second', () => {
    const pool = parsePool('172.16.0.0/16');
    expect(subnetForIndex(pool, 0)).toEqual({ network: '172.16.0.0', hostIp: '172.16.0.1', guestIp: '172.16.0.2', prefix: 30 });
    expect(subnetForIndex(pool, 1)).toEqual({ network: '172.16.0.4', hostIp: '172.16.0.5', guestIp: '172.16.0.6', prefix: 30 });
    expect(subnetForIndex(pool, 64)).toEqual({ network: '172.16.1.0', hostIp: '172.16.1.1', guestIp: '172.16.1.2', prefix: 30 });
    expect(subnetForIndex(pool, 16383)).toEqual({ network: '172.16.255.252', hostIp: '172.16.255.253', guestIp: '172.16.255.254', prefix: 30 });
    expect(() => subnetForIndex(pool, 16384)).toThrow(InvalidArgumentError);
    expect(() => subnetForIndex(pool, -1)).toThrow(InvalidArgumentError);
    expect(() => subnetForIndex(pool, 1.5)).toThrow(InvalidArgumentError);
  });

  it('never hands out the same address twice across the whole pool', () => {
    const pool = parsePool('10.20.0.0/22');
    const seen = new Set<string>();
    for (let i = 0; i < poolCapacity(pool); i++) {
      const s = subnetForIndex(pool, i);
      for (const a of [s.network, s.hostIp, s.guestIp]) {
        expect(seen.has(a), a).toBe(false);
        seen.add(a);
      }
    }
    expect(seen.size).toBe(3 * 256);
  });

  it('allocates the lowest free index, filling gaps', () => {
    const pool = parsePool('172.16.0.0/16');
    expect(firstFreeIndex(pool, [])).toBe(0);
    expect(firstFreeIndex(pool, [0, 1, 2])).toBe(3);
    expect(firstFreeIndex(pool, new Set([0, 2, 3]))).toBe(1);
  });

  it('reports an exhausted pool with its size and the fix', () => {
    const pool = parsePool('192.168.7.0/28');
    expect(firstFreeIndex(pool, [0, 1, 3])).toBe(2);
    const full = () => firstFreeIndex(pool, [0, 1, 2, 3]);
    expect(full).toThrow(FailedPreconditionError);
    expect(full).toThrow('address pool 192.168.7.0/28 is exhausted (4 VMs); free one with banger vm rm or widen BANGER_NET_POOL');
    expect(() => firstFreeIndex(parsePool('192.168.7.4/30'), [0])).toThrow(/exhausted \(1 VMs\)/);
  });

  it('counts routes that overlap the pool, except the default route and banger TAPs', () => {
    const pool = parsePool('172.16.0.0/16');
    const routes = parseIpRoutes(
      JSON.stringify([
        { dst: 'default', gateway: '192.0.2.1', dev: 'eth0', flags: [] },
        { dst: '172.17.0.0/16', dev: 'docker0', protocol: 'kernel', scope: 'link', prefsrc: '172.17.0.1', flags: [] },
        { dst: '172.16.0.0/30', dev: 'bg0123456789ab', protocol: 'kernel', scope: 'link', prefsrc: '172.16.0.1', flags: [] },
        { dst: '172.16.9.0/24', dev: 'wg0', protocol: 'kernel', scope: 'link', flags: [] },
        { dst: '172.0.0.0/8', gateway: '10.0.0.1', dev: 'tun0', flags: [] },
        { dst: '172.15.255.255', dev: 'eth1', scope: 'link', flags: [] },
        { dst: '172.16.200.7', dev: 'eth1', scope: 'link', flags: [] },
      ]),
    );
    expect(poolOverlapsRoutes(pool, routes).map((r) => `${r.dst} ${r.dev}`)).toEqual(['172.16.9.0/24 wg0', '172.0.0.0/8 tun0', '172.16.200.7 eth1']);
    expect(poolOverlapsRoutes(parsePool('10.213.0.0/16'), routes)).toEqual([]);
  });
});

describe('names and addresses', () => {
  it('names the TAP bg + id within the 15-byte interface limit', () => {
    expect(tapName('0123456789ab')).toBe('bg0123456789ab');
    expect(tapName('0123456789abc')).toHaveLength(15);
    expect(() => tapName('0123456789abcd')).toThrow(/longer than 15 bytes/);
    expect(() => tapName('0123456789AB')).toThrow(InvalidArgumentError);
    expect(() => tapName('')).toThrow(InvalidArgumentError);
  });

  it('derives a locally administered unicast MAC from the guest address', () => {
    expect(macForGuestIp('172.16.0.2')).toBe('06:00:AC:10:00:02');
    expect(macForGuestIp('10.255.1.254')).toBe('06:00:0A:FF:01:FE');
    const first = parseInt(macForGuestIp('192.168.7.6').slice(0, 2), 16);
    expect(first & 0x02).toBe(0x02);
    expect(first & 0x01).toBe(0);
    expect(macForGuestIp('172.16.0.6')).not.toBe(macForGuestIp('172.16.0.2'));
    expect(() => macForGuestIp('172.16.0')).toThrow(InvalidArgumentError);
  });

  it('builds the kernel ip= argument for a /30', () => {
    expect(kernelIpArg('172.16.0.2', '172.16.0.1')).toBe('ip=172.16.0.2::172.16.0.1:255.255.255.252::eth0:off');
    expect(() => kernelIpArg('172.16.0.2', 'gateway')).toThrow(InvalidArgumentError);
  });
});

describe('NAT rules', () => {
  const vm = { id: '0123456789ab', guestIp: '172.16.0.6', tap: 'bg0123456789ab' };

  it('tags a MASQUERADE and two FORWARD rules with the VM id', () => {
    expect(natRules(vm, 'eth0')).toEqual([
      ['nat', 'POSTROUTING', '-s', '172.16.0.6/32', '-o', 'eth0', '-m', 'comment', '--comment', 'banger:0123456789ab', '-j', 'MASQUERADE'],
      ['filter', 'FORWARD', '-i', 'bg0123456789ab', '-o', 'eth0', '-m', 'comment', '--comment', 'banger:0123456789ab', '-j', 'ACCEPT'],
      [
        'filter', 'FORWARD', '-i', 'eth0', '-o', 'bg0123456789ab',
        '-m', 'conntrack', '--ctstate', 'RELATED,ESTABLISHED',
        '-m', 'comment', '--comment', 'banger:0123456789ab', '-j', 'ACCEPT',
      ],
    ]);
  });

  it('turns one spec into check, append and delete commands', () => {
    const [masq] = natRules(vm, 'wlp2s0');
    const tail = ['POSTROUTING', '-s', '172.16.0.6/32', '-o', 'wlp2s0', '-m', 'comment', '--comment', 'banger:0123456789ab', '-j', 'MASQUERADE'];
    expect(iptablesCheckArgv(masq)).toEqual(['iptables', '-w', '-t', 'nat', '-C', ...tail]);
    expect(iptablesAppendArgv(masq)).toEqual(['iptables', '-w', '-t', 'nat', '-A', ...tail]);
    expect(iptablesDeleteArgv(masq)).toEqual(['iptables', '-w', '-t', 'nat', '-D', ...tail]);
  });

  it('refuses bad interface names and addresses instead of building odd rules', () => {
    expect(() => natRules(vm, '')).toThrow(InvalidArgumentError);
    expect(() => natRules(vm, 'eth0 -j DROP')).toThrow(InvalidArgumentError);
    expect(() => natRules(vm, 'averyveryverylongname')).toThrow(InvalidArgumentError);
    expect(() => natRules({ ...vm, guestIp: '172.16.0.6/30' }, 'eth0')).toThrow(InvalidArgumentError);
    expect(() => natRules({ ...vm, id: 'zz' }, 'eth0')).toThrow(InvalidArgumentError);
  });

  it('reads tagged rules back from iptables -S output', () => {
    // Captured from iptables v1.8.9 (nf_tables) inside a network namespace.
    const filter = [
      '-P INPUT ACCEPT',
      '-P FORWARD ACCEPT',
      '-P OUTPUT ACCEPT',
      '-A FORWARD -i bgabc -o up0 -m comment --comment "banger:abc" -j ACCEPT',
      '-A FORWARD -i up0 -o bgabc -m conntrack --ctstate RELATED,ESTABLISHED -m comment --comment "banger:abc" -j ACCEPT',
      '-A FORWARD -i docker0 -o eth0 -j ACCEPT',
      '-A FORWARD -i x -m comment --comment "someone else" -j ACCEPT',
      '-A FORWARD -i y -m comment --comment "banger:not-hex" -j ACCEPT',
      '',
    ].join('\n');
    expect(parseTaggedRules('filter', filter)).toEqual([
      { table: 'filter', vmId: 'abc', spec: ['filter', 'FORWARD', '-i', 'bgabc', '-o', 'up0', '-m', 'comment', '--comment', 'banger:abc', '-j', 'ACCEPT'] },
      {
        table: 'filter',
        vmId: 'abc',
        spec: ['filter', 'FORWARD', '-i', 'up0', '-o', 'bgabc', '-m', 'conntrack', '--ctstate', 'RELATED,ESTABLISHED', '-m', 'comment', '--comment', 'banger:abc', '-j', 'ACCEPT'],
      },
    ]);
    const nat = '-P POSTROUTING ACCEPT\n-A POSTROUTING -s 172.16.0.2/32 -o up0 -m comment --comment "banger:abc" -j MASQUERADE\n';
    expect(parseTaggedRules('nat', nat)).toEqual([
      { table: 'nat', vmId: 'abc', spec: ['nat', 'POSTROUTING', '-s', '172.16.0.2/32', '-o', 'up0', '-m', 'comment', '--comment', 'banger:abc', '-j', 'MASQUERADE'] },
    ]);
  });

  it('reads back the specs it generates', () => {
    const text = natRules(vm, 'eth0')
      .filter((s) => s[0] === 'filter')
      .map((s) => ['-A', ...s.slice(1)].map((w) => (w.startsWith('banger:') ? `"${w}"` : w)).join(' '))
      .join('\n');
    expect(parseTaggedRules('filter', text).map((r) => r.spec)).toEqual(natRules(vm, 'eth0').filter((s) => s[0] === 'filter'));
  });

  it('splits quoted words with escapes', () => {
    expect(splitIptablesLine('-A X -m comment --comment "a \\"b\\" c\\\\d" -j ACCEPT')).toEqual(['-A', 'X', '-m', 'comment', '--comment', 'a "b" c\\d', '-j', 'ACCEPT']);
    expect(splitIptablesLine('  -A   X  ')).toEqual(['-A', 'X']);
  });
});

describe('default uplink', () => {
  const route = (dev: string | undefined, metric?: number, extra: Record<string, unknown> = {}) => ({
    dst: 'default',
    gateway: '192.0.2.1',
    ...(dev ? { dev } : {}),
    ...(metric === undefined ? {} : { metric }),
    flags: [],
    ...extra,
  });

  it('takes the device of the one default route', () => {
    // Captured from iproute2-6.1.0.
    expect(parseDefaultUplink('[{"dst":"default","gateway":"192.0.2.1","dev":"eth0","flags":[]}]\n')).toBe('eth0');
  });

  it('picks the lowest metric among several, a missing metric counting as 0', () => {
    expect(parseDefaultUplink(JSON.stringify([route('wlan0', 600), route('enp3s0', 100), route('wwan0', 700)]))).toBe('enp3s0');
    expect(parseDefaultUplink(JSON.stringify([route('wlan0', 600), route('eth0')]))).toBe('eth0');
    expect(parseDefaultUplink(JSON.stringify([route('first', 50), route('second', 50)]))).toBe('first');
  });

  it('answers null when there is no default route', () => {
    expect(parseDefaultUplink('[]')).toBeNull();
    expect(parseDefaultUplink('')).toBeNull();
    expect(parseDefaultUplink('\n')).toBeNull();
  });

  it('skips routes without a device and follows multipath nexthops', () => {
    expect(parseDefaultUplink(JSON.stringify([{ type: 'blackhole', dst: 'default', flags: [] }]))).toBeNull();
    expect(parseDefaultUplink(JSON.stringify([{ type: 'unreachable', dst: 'default', metric: 1, flags: [] }, route('eth1', 100)]))).toBe('eth1');
    const multipath = [{ dst: 'default', metric: 10, flags: [], nexthops: [{ gateway: '10.0.0.1', dev: 'bond0', weight: 1, flags: [] }, { gateway: '10.0.1.1', dev: 'bond1', weight: 1, flags: [] }] }];
    expect(parseDefaultUplink(JSON.stringify(multipath))).toBe('bond0');
  });

  it('prefers the main table when routes of several tables are listed', () => {
    // `ip -j route show table all default` with a policy-routing table 100.
    const all = '[{"dst":"default","gateway":"198.51.100.3","dev":"wg0","table":"100","metric":50,"flags":[]},{"dst":"default","gateway":"198.51.100.1","dev":"up0","metric":600,"flags":[]}]';
    expect(parseDefaultUplink(all)).toBe('up0');
    expect(parseDefaultUplink(JSON.stringify([route('wg0', 5, { table: '100' })]))).toBe('wg0');
    expect(parseDefaultUplink(JSON.stringify([route('wg0', 5, { table: '100' }), route('eth0', 9, { table: 'main' })]))).toBe('eth0');
  });

  it('ignores routes that are not default routes', () => {
    expect(parseDefaultUplink(JSON.stringify([{ dst: '10.0.0.0/8', dev: 'eth0', flags: [] }]))).toBeNull();
  });

  it('fails clearly on truncated output', () => {
    // `ip -j route show default table 200` for a missing table prints "[" and exits 2.
    expect(() => parseDefaultUplink('[')).toThrow(InternalError);
    expect(() => parseDefaultUplink('{"dst":"default"}')).toThrow(/not a JSON array/);
  });
});

describe('ip -j parsers', () => {
  it('parses routes with defaults for missing fields', () => {
    const json =
      '[{"dst":"default","gateway":"198.51.100.1","dev":"up0","flags":[]},{"dst":"10.9.0.0/16","gateway":"198.51.100.5","dev":"up0","metric":7,"flags":[]},{"dst":"172.16.0.0/30","dev":"bgabc","protocol":"kernel","scope":"link","prefsrc":"172.16.0.1","flags":["linkdown"]}]';
    expect(parseIpRoutes(json)).toEqual([
      { dst: 'default', dev: 'up0', gateway: '198.51.100.1', metric: 0, table: null },
      { dst: '10.9.0.0/16', dev: 'up0', gateway: '198.51.100.5', metric: 7, table: null },
      { dst: '172.16.0.0/30', dev: 'bgabc', gateway: null, metric: 0, table: null },
    ]);
  });

  it('parses a TAP from ip -d -j addr show', () => {
    // Captured from iproute2-6.1.0 after `ip tuntap add dev bgabc mode tap user 1000`, addr add and link up.
    const json =
      '[{"ifindex":2,"ifname":"bgabc","flags":["NO-CARRIER","BROADCAST","MULTICAST","UP"],"mtu":1500,"qdisc":"pfifo_fast","operstate":"DOWN","group":"default","txqlen":1000,"link_type":"ether","address":"9e:eb:25:53:82:80","broadcast":"ff:ff:ff:ff:ff:ff","promiscuity":0,"linkinfo":{"info_kind":"tun","info_data":{"type":"tap","pi":false,"vnet_hdr":false,"multi_queue":false,"persist":true,"user":"cloudsdk"}},"addr_info":[{"family":"inet","local":"172.16.0.1","prefixlen":30,"scope":"global","label":"bgabc","valid_life_time":4294967295,"preferred_life_time":4294967295},{"family":"inet6","local":"fe80::1","prefixlen":64}]}]';
    expect(parseIpLinks(json)).toEqual([{ name: 'bgabc', isUp: true, kind: 'tun', tunType: 'tap', addresses: ['172.16.0.1/30'] }]);
  });

  it('parses plain ip -j link show output', () => {
    const json =
      '[{"ifindex":1,"ifname":"lo","flags":["LOOPBACK","UP","LOWER_UP"],"mtu":65536},{"ifindex":4,"ifname":"eth0","flags":["BROADCAST","MULTICAST"],"mtu":1400}]';
    expect(parseIpLinks(json)).toEqual([
      { name: 'lo', isUp: true, kind: null, tunType: null, addresses: [] },
      { name: 'eth0', isUp: false, kind: null, tunType: null, addresses: [] },
    ]);
  });
});
