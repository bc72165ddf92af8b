// A VM's network, composed: TAP, IPv4 forwarding, NAT rules. Every handle is journaled before it
// can exist, so that rollback, normal teardown and recovery after a crash all work from the
// journal through the same release functions.
import { wrapError } from '../core/errors.js';
import { tapName } from '../core/net.js';
import type { Journal, Runner } from '../core/ports.js';
import { unwind, withRollback, type Undo } from '../core/unwind.js';
import { ensureNat, removeNat } from './nat.js';
import { ensureIpForward } from './sysctl.js';
import { createTap, deleteTap } from './tap.js';
import { detectUplink } from './uplink.js';

export interface NetworkContext {
  runner: Runner;
  journal: Journal;
}

export interface NetworkVm {
  id: string;
  tap: string;
  hostIp: string;
  guestIp: string;
  /** False for --no-nat: a TAP and no rules. */
  nat: boolean;
}

export interface NetworkOptions {
  /** BANGER_UPLINK; when absent the default route's interface. */
  uplink?: string;
  /** Owner of the TAP (the uid Firecracker runs as, when not root). */
  tapUser?: number;
}

export interface NetworkSetup {
  /** The interface NAT masquerades out of; null without NAT. Worth storing on the VM record. */
  uplink: string | null;
}

/** What teardown needs; everything but the id can come from the journal. */
export interface NetworkTeardownTarget {
  id: string;
  tap?: string;
  guestIp?: string;
  /** The uplink NAT was applied for, when the VM record knows it. */
  uplink?: string | null;
}

async function step<T>(context: string, run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (err) {
    throw wrapError(context, err);
  }
}

/** Deletes a TAP and forgets it; the journal keeps it when deletion fails. */
async function releaseTap(ctx: NetworkContext, vmId: string, tap: string): Promise<void> {
  await step(`deleting tap ${tap}`, () => deleteTap(ctx.runner, tap));
  ctx.journal.forget(vmId, 'tap', tap);
}

/** Removes NAT rules applied for one uplink and forgets them; the journal keeps them when removal fails. */
async function releaseNat(ctx: NetworkContext, vmId: string, tap: string, uplink: string, guestIp: string): Promise<void> {
  await step(`removing NAT rules for ${guestIp} out of ${uplink}`, () => removeNat(ctx.runner, { id: vmId, guestIp, tap }, uplink));
  ctx.journal.forget(vmId, 'nat', uplink);
}

/**
 * Sets up a VM's network: the TAP with the host address, then (with NAT) ip_forward and the
 * iptables rules. On failure, what was made is removed again and the error is rethrown.
 */
export async function setupNetwork(ctx: NetworkContext, vm: NetworkVm, opts: NetworkOptions = {}): Promise<NetworkSetup> {
  const { runner, journal } = ctx;
  return withRollback(`network setup of vm ${vm.id}`, async (onUndo) => {
    // Measure before acting: a missing uplink fails before anything exists.
    const uplink = vm.nat ? await step('finding the NAT uplink', () => detectUplink(runner, opts.uplink)) : null;

    // Journaled just before `ip tuntap add`, so a crash right after it cannot leak the TAP;
    // deleting a TAP that was never made is a no-op.
    journal.record(vm.id, 'tap', vm.tap);
    onUndo({ name: 'tap.create', run: () => releaseTap(ctx, vm.id, vm.tap) });
    await step(`creating tap ${vm.tap}`, () => createTap(runner, { name: vm.tap, hostIp: vm.hostIp, user: opts.tapUser }));
    if (uplink === null) return { uplink };

    await step('enabling net.ipv4.ip_forward', () => ensureIpForward(runner));

    journal.record(vm.id, 'nat', uplink, vm.guestIp);
    onUndo({ name: 'nat.rules', run: () => releaseNat(ctx, vm.id, vm.tap, uplink, vm.guestIp) });
    await step(`adding NAT rules for ${vm.guestIp} out of ${uplink}`, () => ensureNat(runner, { id: vm.id, guestIp: vm.guestIp, tap: vm.tap }, uplink));
    return { uplink };
  });
}

/**
 * Removes a VM's network: NAT rules first (for every uplink journaled, and the record's own),
 * then the TAP. Every step runs even when one fails; the failures come back as one
 * AggregateError and their journal entries stay for the next attempt or gc.
 */
export async function teardownNetwork(ctx: NetworkContext, vm: NetworkTeardownTarget): Promise<void> {
  const records = ctx.journal.list(vm.id);
  const tap = vm.tap ?? tapName(vm.id);

  const taps = new Set(records.filter((r) => r.kind === 'tap').map((r) => r.handle));
  taps.add(tap);

  const nats = new Map<string, string | undefined>();
  for (const r of records) if (r.kind === 'nat') nats.set(r.handle, r.detail || vm.guestIp);
  if (vm.uplink && !nats.has(vm.uplink)) nats.set(vm.uplink, vm.guestIp);

  // unwind runs these last-first: rules, then TAPs.
  const undos: Undo[] = [];
  for (const t of taps) undos.push({ name: 'tap.delete', run: () => releaseTap(ctx, vm.id, t) });
  for (const [uplink, guestIp] of nats) {
    undos.push({
      name: 'nat.remove',
      run: async () => {
        if (!guestIp) throw new Error(`the guest address of the rules out of ${uplink} is unknown; run banger gc`);
        await releaseNat(ctx, vm.id, tap, uplink, guestIp);
      },
    });
  }
  await unwind(undos, `network teardown of vm ${vm.id}`);
}
