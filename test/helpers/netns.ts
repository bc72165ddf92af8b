// A throwaway network namespace standing for the host: a veth uplink with a default route to a
// peer address inside the same namespace, so nothing leaves it. Always deleted by destroy().
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';

export function sh(argv: string[], opts: { allowFail?: boolean } = {}): string {
  const r = spawnSync(argv[0], argv.slice(1), { encoding: 'utf8' });
  if (r.status !== 0 && !opts.allowFail) throw new Error(`${argv.join(' ')} exited ${r.status}: ${r.stderr}`);
  return r.stdout ?? '';
}

/** Why privileged tests cannot run here, or null when they can. */
export function privilegedSkipReason(): string | null {
  if (process.getuid?.() !== 0) return 'not root';
  const r = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' });
  if (r.status !== 0) return `ip netns unavailable: ${r.stderr}`;
  const ipt = spawnSync('iptables', ['--version'], { encoding: 'utf8' });
  if (ipt.status !== 0) return 'iptables is not installed';
  return null;
}

export class HostNetns {
  readonly name = `bgt${randomBytes(3).toString('hex')}`;
  readonly uplink = 'up0';
  readonly uplinkIp = '198.51.100.2';
  readonly gatewayIp = '198.51.100.1';

  constructor() {
    sh(['ip', 'netns', 'add', this.name]);
    try {
      this.exec(['ip', 'link', 'set', 'lo', 'up']);
      this.exec(['ip', 'link', 'add', this.uplink, 'type', 'veth', 'peer', 'name', 'up0peer']);
      this.exec(['ip', 'addr', 'add', `${this.uplinkIp}/24`, 'dev', this.uplink]);
      this.exec(['ip', 'link', 'set', this.uplink, 'up']);
      this.exec(['ip', 'link', 'set', 'up0peer', 'up']);
      this.exec(['ip', 'route', 'add', 'default', 'via', this.gatewayIp, 'dev', this.uplink]);
    } catch (err) {
      this.destroy();
      throw err;
    }
  }

  get prefix(): string[] {
    return ['ip', 'netns', 'exec', this.name];
  }

  exec(argv: string[], opts: { allowFail?: boolean } = {}): string {
    return sh([...this.prefix, ...argv], opts);
  }

  links(): string[] {
    return (JSON.parse(this.exec(['ip', '-j', 'link', 'show'])) as { ifname: string }[]).map((l) => l.ifname);
  }

  rules(): string[] {
    return [...this.exec(['iptables', '-S']).split('\n'), ...this.exec(['iptables', '-t', 'nat', '-S']).split('\n')].filter((l) => l.includes('banger:'));
  }

  destroy(): void {
    // Processes still in the namespace would keep it alive: kill them first.
    const pids = sh(['ip', 'netns', 'pids', this.name], { allowFail: true }).split('\n').filter(Boolean);
    for (const p of pids) spawnSync('kill', ['-9', p]);
    sh(['ip', 'netns', 'delete', this.name], { allowFail: true });
  }
}
