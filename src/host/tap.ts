// TAP devices, one per VM ("bg<id>"), holding the host address of the VM's /30.
import { FailedPreconditionError, HostCommandError } from '../core/errors.js';
import { TAP_NAME_PATTERN, parseIpLinks, type IpLink } from '../core/net.js';
import type { Runner } from '../core/ports.js';

export interface TapSpec {
  name: string;
  /** Host address; the TAP gets hostIp/30. */
  hostIp: string;
  /** Owner uid, so that a Firecracker not running as root can open the TAP. */
  user?: number;
}

/** The link with its details and addresses, or null when there is no such device. */
async function readLink(runner: Runner, name: string): Promise<IpLink | null> {
  const res = await runner.run(['ip', '-d', '-j', 'addr', 'show', 'dev', name], { check: false });
  if (res.exitCode !== 0) {
    // `Device "bg1a2b" does not exist.` (exit 1) is an answer; anything else is a failure.
    if (/does not exist/.test(res.stderr)) return null;
    throw new HostCommandError({ argv: ['ip', '-d', '-j', 'addr', 'show', 'dev', name], exitCode: res.exitCode, stdout: res.stdout, stderr: res.stderr });
  }
  return parseIpLinks(res.stdout).find((l) => l.name === name) ?? null;
}

export async function tapExists(runner: Runner, name: string): Promise<boolean> {
  return (await readLink(runner, name)) !== null;
}

/**
 * Makes the TAP, gives it hostIp/30 and brings it up. Measures first: each part that is already
 * so is skipped, so calling it again changes nothing.
 */
export async function createTap(runner: Runner, spec: TapSpec): Promise<void> {
  const { name, hostIp } = spec;
  let link = await readLink(runner, name);
  if (link !== null && !(link.kind === 'tun' && link.tunType === 'tap')) {
    throw new FailedPreconditionError(
      `interface ${name} exists but is not a TAP (${link.kind ?? 'unknown kind'}); remove it with ip link del ${name} and try again`,
    );
  }
  if (link === null) {
    const argv = ['ip', 'tuntap', 'add', 'dev', name, 'mode', 'tap'];
    if (spec.user !== undefined) argv.push('user', String(spec.user));
    await runner.run(argv);
    link = { name, isUp: false, kind: 'tun', tunType: 'tap', addresses: [] };
  }
  const address = `${hostIp}/30`;
  if (!link.addresses.includes(address)) await runner.run(['ip', 'addr', 'add', address, 'dev', name]);
  if (!link.isUp) await runner.run(['ip', 'link', 'set', 'dev', name, 'up']);
}

/** Removes the TAP; one that is already gone counts as removed. */
export async function deleteTap(runner: Runner, name: string): Promise<void> {
  const argv = ['ip', 'link', 'del', 'dev', name];
  const res = await runner.run(argv, { check: false });
  if (res.exitCode === 0) return;
  // `Cannot find device "bg1a2b"`: measure to tell "already gone" from a real failure.
  if (!(await tapExists(runner, name))) return;
  throw new HostCommandError({ argv, exitCode: res.exitCode, stdout: res.stdout, stderr: res.stderr });
}

/** Names of every interface that looks like a banger TAP (bg + hex), for gc. */
export async function listBangerTaps(runner: Runner): Promise<string[]> {
  const res = await runner.run(['ip', '-j', 'link', 'show']);
  return parseIpLinks(res.stdout)
    .map((l) => l.name)
    .filter((n) => TAP_NAME_PATTERN.test(n));
}
