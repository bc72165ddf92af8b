// A stateful fake of the network tools banger runs: ip (link, addr, tuntap, route; JSON output),
// iptables (-C/-A/-D/-S with -t and -w) and sysctl. It keeps links, addresses, rules and sysctls
// in memory and answers like the real tools, including their exit codes and messages.
import { fail, ok, type FakeRunner } from './fake-runner.js';
import type { RunResult } from '../../src/core/ports.js';

export interface FakeLink {
  name: string;
  /** "tun" for TAPs; "veth", "dummy", "loopback"... otherwise. */
  kind: string;
  up: boolean;
  /** IPv4 "a.b.c.d/p". */
  addresses: string[];
  user?: number;
}

export interface FakeRule {
  table: string;
  chain: string;
  args: string[];
}

export interface FakeNetOptions {
  /** Entries of `ip -j route show default`; default: one via eth0. */
  defaultRoutes?: Record<string, unknown>[];
  /** More non-connected routes (as `ip -j route show` prints them). */
  routes?: Record<string, unknown>[];
  /** Interfaces present at the start; default: lo plus every default route's dev. */
  links?: string[];
  /** Initial net.ipv4.ip_forward; default 0. */
  ipForward?: 0 | 1;
}

const CHAINS: Record<string, string[]> = {
  filter: ['INPUT', 'FORWARD', 'OUTPUT'],
  nat: ['PREROUTING', 'INPUT', 'OUTPUT', 'POSTROUTING'],
};
const BAD_RULE = 'iptables: Bad rule (does a matching rule exist in that chain?).\n';

export class FakeNet {
  readonly links = new Map<string, FakeLink>();
  readonly rules: FakeRule[] = [];
  readonly sysctls = new Map<string, string>();
  defaultRoutes: Record<string, unknown>[];
  routes: Record<string, unknown>[];

  constructor(opts: FakeNetOptions) {
    this.defaultRoutes = opts.defaultRoutes ?? [{ dst: 'default', gateway: '192.0.2.1', dev: 'eth0', flags: [] }];
    this.routes = opts.routes ?? [];
    const names = opts.links ?? ['lo', ...this.defaultRoutes.map((r) => r.dev).filter((d): d is string => typeof d === 'string')];
    for (const name of names) {
      this.links.set(name, { name, kind: name === 'lo' ? 'loopback' : 'veth', up: true, addresses: [] });
    }
    this.sysctls.set('net.ipv4.ip_forward', String(opts.ipForward ?? 0));
  }

  /** Names of TAP devices. */
  taps(): string[] {
    return [...this.links.values()].filter((l) => l.kind === 'tun').map((l) => l.name);
  }

  /** The `-A ...` lines of one table as `iptables -S` prints them. */
  ruleLines(table: string): string[] {
    const lines: string[] = [];
    for (const chain of CHAINS[table] ?? []) {
      for (const r of this.rules) if (r.table === table && r.chain === chain) lines.push(formatRule(r));
    }
    return lines;
  }

  /** Rules tagged with a VM's comment, in every table. */
  rulesOf(vmId: string): FakeRule[] {
    return this.rules.filter((r) => {
      const at = r.args.indexOf('--comment');
      return at >= 0 && r.args[at + 1] === `banger:${vmId}`;
    });
  }

  // ---- ip ----

  ip(argv: string[]): RunResult {
    let i = 1;
    const flags = new Set<string>();
    while (argv[i]?.startsWith('-')) flags.add(argv[i++]);
    const object = argv[i++];
    const verb = argv[i++];
    const rest = argv.slice(i);
    const json = flags.has('-j') || flags.has('-json');
    const details = flags.has('-d') || flags.has('-details');
    const unsupported = (): never => {
      throw new Error(`fake ip: unsupported command: ${argv.join(' ')}`);
    };
    const devArg = (words: string[]): string | undefined => (words[0] === 'dev' ? words[1] : words[0]);

    if (object === 'link' || object === 'addr' || object === 'address') {
      if (verb === 'show') {
        if (!json) unsupported();
        const name = devArg(rest);
        if (name !== undefined) {
          const link = this.links.get(name);
          if (!link) return fail(1, `Device "${name}" does not exist.\n`);
          return ok(JSON.stringify([this.linkJson(link, details, object !== 'link')]) + '\n');
        }
        return ok(JSON.stringify([...this.links.values()].map((l) => this.linkJson(l, details, object !== 'link'))) + '\n');
      }
      if (object === 'link' && verb === 'set') {
        const name = devArg(rest);
        const state = rest[rest.indexOf(name ?? '') + 1];
        const link = name === undefined ? undefined : this.links.get(name);
        if (!link) return fail(1, `Cannot find device "${name}"\n`);
        if (state === 'up') link.up = true;
        else if (state === 'down') link.up = false;
        else unsupported();
        return ok();
      }
      if (object === 'link' && (verb === 'del' || verb === 'delete')) {
        const name = devArg(rest);
        if (name === undefined || !this.links.has(name)) return fail(1, `Cannot find device "${name}"\n`);
        this.links.delete(name);
        return ok();
      }
      if (object !== 'link' && verb === 'add') {
        const [address, dev, name] = rest;
        if (dev !== 'dev' || !/^\d+\.\d+\.\d+\.\d+\/\d+$/.test(address)) unsupported();
        const link = this.links.get(name);
        if (!link) return fail(1, `Cannot find device "${name}"\n`);
        if (link.addresses.includes(address)) return fail(2, 'Error: ipv4: Address already assigned.\n');
        link.addresses.push(address);
        return ok();
      }
      unsupported();
    }

    if (object === 'tuntap') {
      const name = rest[0] === 'dev' ? rest[1] : undefined;
      const mode = rest[rest.indexOf('mode') + 1];
      if (name === undefined || mode !== 'tap') unsupported();
      if (verb === 'add') {
        if (this.links.has(name!)) return fail(1, 'ioctl(TUNSETIFF): Device or resource busy\n');
        const at = rest.indexOf('user');
        this.links.set(name!, { name: name!, kind: 'tun', up: false, addresses: [], user: at >= 0 ? Number(rest[at + 1]) : undefined });
        return ok();
      }
      if (verb === 'del' || verb === 'delete') {
        // The real tool exits 0 when the device does not exist.
        if (this.links.get(name!)?.kind === 'tun') this.links.delete(name!);
        return ok();
      }
      unsupported();
    }

    if (object === 'route' && verb === 'show') {
      if (!json) unsupported();
      if (rest.length === 1 && rest[0] === 'default') return ok(JSON.stringify(this.defaultRoutes) + '\n');
      if (rest.length > 0) unsupported();
      return ok(JSON.stringify([...this.defaultRoutes, ...this.routes, ...this.connectedRoutes()]) + '\n');
    }
    return unsupported();
  }

  private linkJson(link: FakeLink, details: boolean, withAddresses: boolean): Record<string, unknown> {
    const index = [...this.links.keys()].indexOf(link.name) + 1;
    const flags = link.kind === 'loopback' ? ['LOOPBACK'] : ['BROADCAST', 'MULTICAST'];
    if (link.up) flags.push('UP');
    const out: Record<string, unknown> = {
      ifindex: index,
      ifname: link.name,
      flags,
      mtu: 1500,
      operstate: link.up ? 'UNKNOWN' : 'DOWN',
      link_type: link.kind === 'loopback' ? 'loopback' : 'ether',
      address: `02:00:00:00:00:${index.toString(16).padStart(2, '0')}`,
    };
    if (details && link.kind !== 'loopback') {
      out.linkinfo =
        link.kind === 'tun'
          ? { info_kind: 'tun', info_data: { type: 'tap', pi: false, vnet_hdr: false, multi_queue: false, persist: true, ...(link.user !== undefined ? { user: String(link.user) } : {}) } }
          : { info_kind: link.kind };
    }
    if (withAddresses) {
      out.addr_info = link.addresses.map((a) => {
        const [local, prefixlen] = a.split('/');
        return { family: 'inet', local, prefixlen: Number(prefixlen), scope: 'global', label: link.name };
      });
    }
    return out;
  }

  /** The kernel's prefix routes for addresses on links that are up. */
  private connectedRoutes(): Record<string, unknown>[] {
    const out: Record<string, unknown>[] = [];
    for (const link of this.links.values()) {
      if (!link.up || link.kind === 'loopback') continue;
      for (const a of link.addresses) {
        const [local, p] = a.split('/');
        const prefix = Number(p);
        const n = local.split('.').reduce((acc, o) => acc * 256 + Number(o), 0);
        const mask = prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
        const net = (n & mask) >>> 0;
        const dst = [net >>> 24, (net >>> 16) & 255, (net >>> 8) & 255, net & 255].join('.');
        out.push({ dst: `${dst}/${prefix}`, dev: link.name, protocol: 'kernel', scope: 'link', prefsrc: local, flags: [] });
      }
    }
    return out;
  }

  // ---- iptables ----

  iptables(argv: string[]): RunResult {
    let table = 'filter';
    let op: string | null = null;
    let chain: string | undefined;
    let i = 1;
    while (i < argv.length && op === null) {
      const a = argv[i++];
      if (a === '-w' || a === '--wait') {
        if (/^\d+$/.test(argv[i] ?? '')) i++;
      } else if (a === '-t' || a === '--table') {
        table = argv[i++];
      } else if (['-C', '-A', '-D', '-S'].includes(a)) {
        op = a;
        if (op !== '-S' || (argv[i] !== undefined && !argv[i].startsWith('-'))) chain = argv[i++];
      } else {
        throw new Error(`fake iptables: unsupported option ${a} in ${argv.join(' ')}`);
      }
    }
    if (op === null) throw new Error(`fake iptables: no command in ${argv.join(' ')}`);
    const chains = CHAINS[table];
    if (!chains) return fail(3, `iptables v1.8.9 (nf_tables): table '${table}' does not exist\n`);
    const args = argv.slice(i);

    if (op === '-S') {
      if (args.length > 0) throw new Error(`fake iptables: unsupported -S arguments ${args.join(' ')}`);
      const shown = chain === undefined ? chains : [chain];
      if (chain !== undefined && !chains.includes(chain)) return fail(1, 'iptables: No chain/target/match by that name.\n');
      const lines = shown.map((c) => `-P ${c} ACCEPT`);
      for (const c of shown) for (const r of this.rules) if (r.table === table && r.chain === c) lines.push(formatRule(r));
      return ok(lines.join('\n') + '\n');
    }

    if (chain === undefined || !chains.includes(chain)) return fail(1, 'iptables: No chain/target/match by that name.\n');
    const invalid = checkMatches(args);
    if (invalid) return fail(2, invalid);
    const at = this.rules.findIndex((r) => r.table === table && r.chain === chain && sameArgs(r.args, args));
    if (op === '-C') return at >= 0 ? ok() : fail(1, BAD_RULE);
    if (op === '-A') {
      this.rules.push({ table, chain, args: [...args] });
      return ok();
    }
    // -D
    if (at < 0) return fail(1, BAD_RULE);
    this.rules.splice(at, 1);
    return ok();
  }

  // ---- sysctl ----

  sysctl(argv: string[]): RunResult {
    if (argv[1] === '-n' && argv.length === 3) {
      const value = this.sysctls.get(argv[2]);
      if (value === undefined) return fail(255, `sysctl: cannot stat /proc/sys/${argv[2].replace(/\./g, '/')}: No such file or directory\n`);
      return ok(`${value}\n`);
    }
    if (argv[1] === '-w' && argv.length === 3) {
      const [key, value] = argv[2].split('=');
      if (!this.sysctls.has(key) || value === undefined) return fail(255, `sysctl: cannot stat /proc/sys/${key.replace(/\./g, '/')}: No such file or directory\n`);
      this.sysctls.set(key, value);
      return ok(`${key} = ${value}\n`);
    }
    throw new Error(`fake sysctl: unsupported command: ${argv.join(' ')}`);
  }
}

function sameArgs(a: string[], b: string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/** Options of a match extension need the extension loaded first, as with the real tool. */
function checkMatches(args: string[]): string | null {
  const needs: Record<string, string> = { '--comment': 'comment', '--ctstate': 'conntrack' };
  const loaded = new Set<string>();
  for (let i = 0; i < args.length; i++) {
    if (args[i] === '-m') loaded.add(args[i + 1]);
    const ext = needs[args[i]];
    if (ext && !loaded.has(ext)) return `iptables v1.8.9 (nf_tables): unknown option "${args[i]}"\n`;
  }
  return null;
}

/** `-A FORWARD -i bg1 -o eth0 -m comment --comment "banger:1" -j ACCEPT`, quoting like iptables -S. */
function formatRule(r: FakeRule): string {
  const words = r.args.map((w, i) => (r.args[i - 1] === '--comment' ? `"${w.replace(/(["\\])/g, '\\$1')}"` : w));
  return ['-A', r.chain, ...words].join(' ');
}

/** Registers ip, iptables and sysctl handlers on the fake runner; returns the state for assertions. */
export function installFakeNet(fake: FakeRunner, opts: FakeNetOptions = {}): FakeNet {
  const net = new FakeNet(opts);
  fake.handle('ip', (argv) => net.ip(argv));
  fake.handle('iptables', (argv) => net.iptables(argv));
  fake.handle('sysctl', (argv) => net.sysctl(argv));
  return net;
}
