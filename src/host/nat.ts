// A VM's iptables rules (MASQUERADE out of the uplink, FORWARD both ways between TAP and
// uplink), each tagged "banger:<vm id>", added only when absent and removed by the same spec.
import { HostCommandError, InternalError } from '../core/errors.js';
import {
  iptablesAppendArgv,
  iptablesCheckArgv,
  iptablesDeleteArgv,
  natRules,
  parseTaggedRules,
  type NatTarget,
  type TaggedRule,
} from '../core/net.js';
import type { Runner } from '../core/ports.js';

/** Tables that hold banger rules. */
const TABLES = ['filter', 'nat'] as const;
/** Guard against deleting forever when a rule somehow keeps reappearing. */
const MAX_DUPLICATES = 32;

/** Whether the rule exists. `iptables -C` exits 1 when it does not; other codes are failures. */
export async function hasRule(runner: Runner, spec: string[]): Promise<boolean> {
  const argv = iptablesCheckArgv(spec);
  const res = await runner.run(argv, { check: false });
  if (res.exitCode === 0) return true;
  // "iptables: Bad rule (does a matching rule exist in that chain?)." exit 1
  if (res.exitCode === 1) return false;
  throw new HostCommandError({ argv, exitCode: res.exitCode, stdout: res.stdout, stderr: res.stderr });
}

/** Adds the VM's rules that are missing; applying twice adds nothing. */
export async function ensureNat(runner: Runner, vm: NatTarget, uplink: string): Promise<void> {
  for (const spec of natRules(vm, uplink)) {
    if (!(await hasRule(runner, spec))) await runner.run(iptablesAppendArgv(spec));
  }
}

/** Deletes every copy of one rule; an absent rule counts as removed. */
export async function removeRuleSpec(runner: Runner, spec: string[]): Promise<void> {
  for (let i = 0; i < MAX_DUPLICATES; i++) {
    if (!(await hasRule(runner, spec))) return;
    await runner.run(iptablesDeleteArgv(spec));
  }
  throw new InternalError(`iptables rule still present after ${MAX_DUPLICATES} deletions: ${iptablesDeleteArgv(spec).join(' ')}`);
}

/** Removes the VM's rules; every rule's removal runs even when one fails (AggregateError). */
export async function removeNat(runner: Runner, vm: NatTarget, uplink: string): Promise<void> {
  const errors: Error[] = [];
  for (const spec of natRules(vm, uplink)) {
    try {
      await removeRuleSpec(runner, spec);
    } catch (err) {
      errors.push(err instanceof Error ? err : new Error(String(err)));
    }
  }
  if (errors.length > 0) {
    throw new AggregateError(errors, `removing NAT rules of vm ${vm.id}: ${errors.map((e) => e.message).join('; ')}`);
  }
}

/** Every rule tagged "banger:<id>" in the filter and nat tables, for gc. */
export async function listBangerRules(runner: Runner): Promise<TaggedRule[]> {
  const out: TaggedRule[] = [];
  for (const table of TABLES) {
    const res = await runner.run(['iptables', '-w', '-t', table, '-S']);
    out.push(...parseTaggedRules(table, res.stdout));
  }
  return out;
}
