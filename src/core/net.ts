// Network planning, pure: the address pool carved into one /30 per VM, TAP names, MACs, the
// kernel ip= argument, the iptables rules of a VM, and parsers of `ip -j` and `iptables -S`.
// Nothing here runs a command; src/host/{tap,nat,uplink,sysctl,network}.ts apply these plans.
import { FailedPreconditionError, InternalError, InvalidArgumentError } from './errors.js';

/** An IPv4 network that VMs take their /30s from, e.g. 172.16.0.0/16. */
export interface AddressPool {
  /** Canonical "a.b.c.d/p". */
  cidr: string;
  network: string;
  prefix: number;
  /** The network address as an unsigned 32-bit integer. */
  base: number;
}

/** One VM's /30: network, host (TAP) address, guest address. */
export interface Subnet {
  network: string;
  hostIp: string;
  guestIp: string;
  prefix: 30;
}

export const MIN_POOL_PREFIX = 8;
export const MAX_POOL_PREFIX = 30;
/** Linux interface names hold at most 15 bytes (IFNAMSIZ 16 with the NUL). */
export const IFNAME_MAX_BYTES = 15;
export const TAP_PREFIX = 'bg';
export const TAP_NAME_PATTERN = /^bg[0-9a-f]+$/;
/** The iptables comment that tags every rule of a VM: "banger:<vm id>". */
export const RULE_COMMENT_PREFIX = 'banger:';

const OCTET = /^(0|[1-9][0-9]{0,2})$/;

/** "172.16.0.2" -> 0xac100002; null when not a dotted-quad IPv4 address. */
export function parseIpv4(text: string): number | null {
  const parts = text.split('.');
  if (parts.length !== 4) return null;
  let n = 0;
  for (const p of parts) {
    if (!OCTET.test(p)) return null;
    const v = Number(p);
    if (v > 255) return null;
    n = n * 256 + v;
  }
  return n;
}

export function formatIpv4(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

function requireIpv4(text: string, what: string): number {
  const n = parseIpv4(text);
  if (n === null) throw new InvalidArgumentError(`${what} "${text}" is not an IPv4 address such as 172.16.0.2`);
  return n;
}

/** Parses and validates the pool CIDR (BANGER_NET_POOL). */
export function parsePool(cidr: string): AddressPool {
  const text = cidr.trim();
  const m = /^([0-9.]+)\/([0-9]{1,2})$/.exec(text);
  const addr = m ? parseIpv4(m[1]) : null;
  if (!m || addr === null) {
    throw new InvalidArgumentError(`address pool "${cidr}" is not an IPv4 CIDR; set BANGER_NET_POOL to one such as 172.16.0.0/16`);
  }
  const prefix = Number(m[2]);
  if (prefix < MIN_POOL_PREFIX || prefix > MAX_POOL_PREFIX) {
    throw new InvalidArgumentError(
      `address pool "${cidr}" has prefix /${prefix}; set BANGER_NET_POOL to a prefix between /${MIN_POOL_PREFIX} and /${MAX_POOL_PREFIX}, such as 172.16.0.0/16`,
    );
  }
  const mask = prefixMask(prefix);
  const base = (addr & mask) >>> 0;
  if (base !== addr) {
    throw new InvalidArgumentError(
      `address pool "${cidr}" is not a network address; set BANGER_NET_POOL to ${formatIpv4(base)}/${prefix}`,
    );
  }
  return { cidr: `${formatIpv4(base)}/${prefix}`, network: formatIpv4(base), prefix, base };
}

function prefixMask(prefix: number): number {
  return prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
}

/** How many /30s (VMs) the pool holds: 2^(30 - prefix). */
export function poolCapacity(pool: AddressPool): number {
  return 2 ** (30 - pool.prefix);
}

/** The /30 at a pool index: host = network + 1 (the TAP), guest = network + 2. */
export function subnetForIndex(pool: AddressPool, index: number): Subnet {
  const capacity = poolCapacity(pool);
  if (!Number.isInteger(index) || index < 0 || index >= capacity) {
    throw new InvalidArgumentError(`pool index ${index} is outside ${pool.cidr} (0 to ${capacity - 1})`);
  }
  const network = pool.base + index * 4;
  return { network: formatIpv4(network), hostIp: formatIpv4(network + 1), guestIp: formatIpv4(network + 2), prefix: 30 };
}

/** The lowest pool index not in use. */
export function firstFreeIndex(pool: AddressPool, usedIndexes: Iterable<number>): number {
  const capacity = poolCapacity(pool);
  const used = new Set(usedIndexes);
  for (let i = 0; i < capacity; i++) {
    if (!used.has(i)) return i;
  }
  throw new FailedPreconditionError(
    `address pool ${pool.cidr} is exhausted (${capacity} VMs); free one with banger vm rm or widen BANGER_NET_POOL`,
  );
}

function byteLength(s: string): number {
  return new TextEncoder().encode(s).length;
}

/** The TAP of a VM: "bg" + id, e.g. "bg1a2b3c4d5e6f" (14 bytes for a 12-char id). */
export function tapName(vmId: string): string {
  if (!/^[0-9a-f]+$/.test(vmId)) throw new InvalidArgumentError(`vm id "${vmId}" is not lowercase hex`);
  const name = TAP_PREFIX + vmId;
  if (byteLength(name) > IFNAME_MAX_BYTES) {
    throw new InvalidArgumentError(`tap name "${name}" is longer than ${IFNAME_MAX_BYTES} bytes; vm ids must be at most 13 characters`);
  }
  return name;
}

/**
 * The guest's MAC: 06:00 followed by the four octets of its IPv4 address, so 172.16.0.2 ->
 * 06:00:AC:10:00:02. The first octet 0x06 has the locally-administered bit (0x02) set and the
 * multicast bit (0x01) clear; the address is unique exactly as long as the guest address is.
 */
export function macForGuestIp(guestIp: string): string {
  const n = requireIpv4(guestIp, 'guest address');
  const octets = [0x06, 0x00, n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255];
  return octets.map((o) => o.toString(16).toUpperCase().padStart(2, '0')).join(':');
}

/** Kernel boot argument that configures the guest's eth0 (no DHCP, no autoconf). */
export function kernelIpArg(guestIp: string, hostIp: string): string {
  requireIpv4(guestIp, 'guest address');
  requireIpv4(hostIp, 'host address');
  // ip=<client>:<server>:<gateway>:<netmask>:<hostname>:<device>:<autoconf>
  return `ip=${guestIp}::${hostIp}:255.255.255.252::eth0:off`;
}

function requireIfname(name: string, what: string): void {
  if (!/^[A-Za-z0-9_.:@-]+$/.test(name) || byteLength(name) > IFNAME_MAX_BYTES) {
    throw new InvalidArgumentError(`${what} "${name}" is not a valid interface name (letters, digits, -_.:, at most ${IFNAME_MAX_BYTES} bytes)`);
  }
}

/** A VM as the NAT rules see it. */
export interface NatTarget {
  id: string;
  guestIp: string;
  tap: string;
}

/**
 * The iptables rules of a VM, each as [table, chain, ...match and target args]. The args are in
 * the order `iptables -S` prints them, so a spec reads back identically:
 *   -A FORWARD -i up0 -o bg1a2b -m conntrack --ctstate RELATED,ESTABLISHED -m comment --comment "banger:1a2b" -j ACCEPT
 */
export function natRules(vm: NatTarget, uplink: string): string[][] {
  if (!/^[0-9a-f]+$/.test(vm.id)) throw new InvalidArgumentError(`vm id "${vm.id}" is not lowercase hex`);
  requireIpv4(vm.guestIp, 'guest address');
  requireIfname(vm.tap, 'tap');
  requireIfname(uplink, 'uplink');
  const tag = ['-m', 'comment', '--comment', RULE_COMMENT_PREFIX + vm.id];
  return [
    ['nat', 'POSTROUTING', '-s', `${vm.guestIp}/32`, '-o', uplink, ...tag, '-j', 'MASQUERADE'],
    ['filter', 'FORWARD', '-i', vm.tap, '-o', uplink, ...tag, '-j', 'ACCEPT'],
    ['filter', 'FORWARD', '-i', uplink, '-o', vm.tap, '-m', 'conntrack', '--ctstate', 'RELATED,ESTABLISHED', ...tag, '-j', 'ACCEPT'],
  ];
}

function iptablesArgv(op: '-C' | '-A' | '-D', spec: string[]): string[] {
  const [table, chain, ...args] = spec;
  if (!table || !chain) throw new InvalidArgumentError(`iptables rule spec needs a table and a chain: ${JSON.stringify(spec)}`);
  // -w waits for the xtables lock instead of failing when another tool holds it.
  return ['iptables', '-w', '-t', table, op, chain, ...args];
}

/** Probe: exits 0 when the rule exists, 1 when it does not. */
export const iptablesCheckArgv = (spec: string[]): string[] => iptablesArgv('-C', spec);
export const iptablesAppendArgv = (spec: string[]): string[] => iptablesArgv('-A', spec);
export const iptablesDeleteArgv = (spec: string[]): string[] => iptablesArgv('-D', spec);

/** One route of `ip -j route show`. */
export interface IpRoute {
  /** "default", "10.0.0.0/8" or a host address "10.1.2.3". */
  dst: string;
  dev: string | null;
  gateway: string | null;
  metric: number;
  /** Absent in `ip route show` (the main table); set with `table all`. */
  table: string | null;
}

function parseJsonArray(json: string, what: string): unknown[] {
  const text = json.trim();
  // Some iproute2 versions print nothing at all when there is nothing to list.
  if (text === '') return [];
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    // Seen: `ip -j route show table 200` on a missing table prints "[" and exits 2.
    throw new InternalError(`could not parse ${what} output ${JSON.stringify(text.slice(0, 120))}`, { cause: err });
  }
  if (!Array.isArray(value)) throw new InternalError(`${what} output is not a JSON array: ${JSON.stringify(text.slice(0, 120))}`);
  return value;
}

function stringField(o: Record<string, unknown>, key: string): string | null {
  const v = o[key];
  return typeof v === 'string' && v !== '' ? v : null;
}

/**
 * Parses `ip -j route show` output. A multipath route has no top-level dev; it takes its first
 * nexthop's: {"dst":"default","nexthops":[{"gateway":"10.0.0.1","dev":"eth0","weight":1}]}.
 */
export function parseIpRoutes(json: string): IpRoute[] {
  const out: IpRoute[] = [];
  for (const entry of parseJsonArray(json, 'ip -j route show')) {
    if (typeof entry !== 'object' || entry === null) continue;
    const o = entry as Record<string, unknown>;
    const dst = stringField(o, 'dst');
    if (!dst) continue;
    let dev = stringField(o, 'dev');
    let gateway = stringField(o, 'gateway');
    if (!dev && Array.isArray(o.nexthops)) {
      const hop = o.nexthops.find((h): h is Record<string, unknown> => typeof h === 'object' && h !== null && typeof (h as Record<string, unknown>).dev === 'string');
      if (hop) {
        dev = stringField(hop, 'dev');
        gateway = gateway ?? stringField(hop, 'gateway');
      }
    }
    const metric = typeof o.metric === 'number' && Number.isFinite(o.metric) ? o.metric : 0;
    out.push({ dst, dev, gateway, metric, table: stringField(o, 'table') });
  }
  return out;
}

function isDefaultDst(dst: string): boolean {
  return dst === 'default' || dst === '0.0.0.0/0';
}

function isMainTable(table: string | null): boolean {
  return table === null || table === 'main' || table === '254';
}

/**
 * The uplink from `ip -j route show default`: the device of the default route with the lowest
 * metric (missing metric = 0; the first wins a tie). Entries without a device (blackhole,
 * unreachable) are skipped; routes of the main table are preferred over policy tables. Null when
 * there is no usable default route.
 */
export function parseDefaultUplink(json: string): string | null {
  const candidates = parseIpRoutes(json).filter((r) => isDefaultDst(r.dst) && r.dev !== null);
  const main = candidates.filter((r) => isMainTable(r.table));
  const pool = main.length > 0 ? main : candidates;
  let best: IpRoute | null = null;
  for (const r of pool) if (best === null || r.metric < best.metric) best = r;
  return best?.dev ?? null;
}

/** [first, last] addresses of a route's destination; null for non-IPv4 destinations. */
function routeRange(dst: string): [number, number] | null {
  if (isDefaultDst(dst)) return [0, 0xffffffff];
  const [addrText, prefixText] = dst.split('/');
  const addr = parseIpv4(addrText);
  if (addr === null) return null;
  const prefix = prefixText === undefined ? 32 : Number(prefixText);
  if (!Number.isInteger(prefix) || prefix < 0 || prefix > 32) return null;
  const first = (addr & prefixMask(prefix)) >>> 0;
  return [first, first + 2 ** (32 - prefix) - 1];
}

/**
 * Host routes whose destination overlaps the pool. The default route and routes on banger's own
 * TAPs (each VM's /30, which lies inside the pool by design) do not count.
 */
export function poolOverlapsRoutes(pool: AddressPool, routes: IpRoute[]): IpRoute[] {
  const first = pool.base;
  const last = pool.base + 2 ** (32 - pool.prefix) - 1;
  return routes.filter((r) => {
    if (isDefaultDst(r.dst)) return false;
    if (r.dev !== null && TAP_NAME_PATTERN.test(r.dev)) return false;
    const range = routeRange(r.dst);
    return range !== null && range[0] <= last && first <= range[1];
  });
}

/** One link of `ip -j [-d] link show` or `ip -j [-d] addr show`. */
export interface IpLink {
  name: string;
  isUp: boolean;
  /** linkinfo.info_kind with -d ("tun", "veth", ...); null otherwise. */
  kind: string | null;
  /** linkinfo.info_data.type for tun devices ("tap" or "tun"); null otherwise. */
  tunType: string | null;
  /** IPv4 addresses as "a.b.c.d/p" (addr show only). */
  addresses: string[];
}

/** Parses `ip -j link show` / `ip -j -d addr show` output. */
export function parseIpLinks(json: string): IpLink[] {
  const out: IpLink[] = [];
  for (const entry of parseJsonArray(json, 'ip -j link show')) {
    if (typeof entry !== 'object' || entry === null) continue;
    const o = entry as Record<string, unknown>;
    const rawName = stringField(o, 'ifname');
    if (!rawName) continue;
    const flags = Array.isArray(o.flags) ? o.flags : [];
    const info = typeof o.linkinfo === 'object' && o.linkinfo !== null ? (o.linkinfo as Record<string, unknown>) : null;
    const data = info && typeof info.info_data === 'object' && info.info_data !== null ? (info.info_data as Record<string, unknown>) : null;
    const addresses: string[] = [];
    if (Array.isArray(o.addr_info)) {
      for (const a of o.addr_info) {
        if (typeof a !== 'object' || a === null) continue;
        const ai = a as Record<string, unknown>;
        if (ai.family === 'inet' && typeof ai.local === 'string' && typeof ai.prefixlen === 'number') {
          addresses.push(`${ai.local}/${ai.prefixlen}`);
        }
      }
    }
    out.push({
      // Text output names a veth "up0@peer"; keep only the name in case JSON ever does too.
      name: rawName.split('@')[0],
      isUp: flags.includes('UP'),
      kind: info ? stringField(info, 'info_kind') : null,
      tunType: data ? stringField(data, 'type') : null,
      addresses,
    });
  }
  return out;
}

/** A rule read back from `iptables -S`, tagged with the VM it belongs to. */
export interface TaggedRule {
  table: string;
  /** [table, chain, ...args], ready for iptablesDeleteArgv. */
  spec: string[];
  vmId: string;
}

/**
 * Splits one `iptables -S` line into words. Comments are double-quoted with \" and \\ escapes:
 *   -A FORWARD -i bg1a2b -o eth0 -m comment --comment "banger:1a2b" -j ACCEPT
 */
export function splitIptablesLine(line: string): string[] {
  const words: string[] = [];
  let i = 0;
  while (i < line.length) {
    while (i < line.length && /\s/.test(line[i])) i++;
    if (i >= line.length) break;
    let word = '';
    if (line[i] === '"') {
      i++;
      while (i < line.length && line[i] !== '"') {
        if (line[i] === '\\' && i + 1 < line.length) i++;
        word += line[i++];
      }
      i++;
    } else {
      while (i < line.length && !/\s/.test(line[i])) word += line[i++];
    }
    words.push(word);
  }
  return words;
}

/** Rules of one table's `iptables -S` output whose comment is "banger:<id>". */
export function parseTaggedRules(table: string, text: string): TaggedRule[] {
  const out: TaggedRule[] = [];
  for (const line of text.split('\n')) {
    const words = splitIptablesLine(line.trim());
    if (words[0] !== '-A' || words.length < 2) continue;
    const at = words.indexOf('--comment');
    const comment = at >= 0 ? words[at + 1] : undefined;
    if (!comment?.startsWith(RULE_COMMENT_PREFIX)) continue;
    const vmId = comment.slice(RULE_COMMENT_PREFIX.length);
    if (!/^[0-9a-f]+$/.test(vmId)) continue;
    out.push({ table, spec: [table, ...words.slice(1)], vmId });
  }
  return out;
}
