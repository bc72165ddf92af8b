// IPv4 forwarding, which NAT needs. banger turns it on and never turns it off: other software
// on the host may rely on it once it is on.
import { InternalError } from '../core/errors.js';
import type { Runner } from '../core/ports.js';

const IP_FORWARD = 'net.ipv4.ip_forward';

/** Whether net.ipv4.ip_forward is 1 (in the runner's network namespace). */
export async function readIpForward(runner: Runner): Promise<boolean> {
  const res = await runner.run(['sysctl', '-n', IP_FORWARD]);
  const value = res.stdout.trim();
  if (value !== '0' && value !== '1') throw new InternalError(`sysctl -n ${IP_FORWARD} printed ${JSON.stringify(value)}, expected 0 or 1`);
  return value === '1';
}

/** Sets net.ipv4.ip_forward=1 when it is 0; answers whether it changed anything. */
export async function ensureIpForward(runner: Runner): Promise<boolean> {
  if (await readIpForward(runner)) return false;
  await runner.run(['sysctl', '-w', `${IP_FORWARD}=1`]);
  return true;
}
