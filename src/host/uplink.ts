// The uplink: the interface NAT masquerades out of (BANGER_UPLINK, else the default route's),
// and the check that the address pool does not collide with a host route.
import { FailedPreconditionError, InvalidArgumentError } from '../core/errors.js';
import { IFNAME_MAX_BYTES, parseDefaultUplink, parseIpRoutes, poolOverlapsRoutes, type AddressPool } from '../core/net.js';
import type { Runner } from '../core/ports.js';

/** The uplink interface: the override when given (it must exist), else the lowest-metric default route's device. */
export async function detectUplink(runner: Runner, override?: string): Promise<string> {
  const wanted = override?.trim();
  if (wanted) {
    if (!/^[A-Za-z0-9_.:@-]+$/.test(wanted) || Buffer.byteLength(wanted) > IFNAME_MAX_BYTES) {
      throw new InvalidArgumentError(`BANGER_UPLINK "${wanted}" is not an interface name; set it to one listed by ip link, or unset it`);
    }
    const res = await runner.run(['ip', '-j', 'link', 'show', 'dev', wanted], { check: false });
    if (res.exitCode !== 0) {
      const why = res.stderr.trim().split('\n').pop() || `ip link show exited ${res.exitCode}`;
      throw new FailedPreconditionError(
        `BANGER_UPLINK names interface ${wanted}, which does not exist (${why}); set it to one listed by ip link, or unset it to use the default route's`,
      );
    }
    return wanted;
  }
  const res = await runner.run(['ip', '-j', 'route', 'show', 'default']);
  const dev = parseDefaultUplink(res.stdout);
  if (dev === null) {
    throw new FailedPreconditionError(
      'NAT needs a default route to find the uplink interface and this host has none; set BANGER_UPLINK to the interface to masquerade out of, or create the VM with --no-nat',
    );
  }
  return dev;
}

/** Fails when a host route overlaps the pool (banger's own TAP routes aside). */
export async function checkPoolAgainstRoutes(runner: Runner, pool: AddressPool): Promise<void> {
  const res = await runner.run(['ip', '-j', 'route', 'show']);
  const overlaps = poolOverlapsRoutes(pool, parseIpRoutes(res.stdout));
  if (overlaps.length === 0) return;
  const named = overlaps.map((r) => `${r.dst}${r.dev ? ` dev ${r.dev}` : ''}`).join(', ');
  throw new FailedPreconditionError(
    `address pool ${pool.cidr} overlaps host route ${named}; set BANGER_NET_POOL to a range no route uses (for example 10.213.0.0/16)`,
    { details: { pool: pool.cidr, routes: overlaps } },
  );
}
