// Concurrency: 50 `banger vm create` processes at once through the built CLI, against a real daemon
// inside a throwaway network namespace, each starting its VM on the Firecracker stand-in; ten names,
// each asked for five times. Exactly one create per name wins, the others are told the name exists;
// the winners get distinct addresses, MACs, TAPs and processes; removing them all leaves nothing.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { BangerEnv, makeImageFiles, isAlive, type RunResult } from '../helpers/banger-env.js';
import { HostNetns, privilegedSkipReason } from '../helpers/netns.js';
import { firecrackersUnder, standinBinary } from '../helpers/fault-host.js';

const skip = privilegedSkipReason();
if (skip) console.warn(`skipping the concurrency test: ${skip}`);

const NAMES = Array.from({ length: 10 }, (_, i) => `race-${i}`);
const TRIES_PER_NAME = 5;

describe.skipIf(skip !== null)('50 parallel creates with colliding names', () => {
  let ns: HostNetns;
  let env: BangerEnv;

  const cli = (args: string[]) => env.cli(args, { prefix: ns.prefix });
  const json = <T = any>(args: string[]): T => env.json<T>(args, { prefix: ns.prefix });

  beforeAll(async () => {
    ns = new HostNetns();
    env = new BangerEnv({ BANGER_BUILD_ID: 'concurrency', BANGER_FIRECRACKER: await standinBinary() });
    const files = makeImageFiles(join(env.dir, 'src'), 8);
    expect(cli(['image', 'add', 'base', '--kernel', files.kernel, '--rootfs', files.rootfs, '--initrd', files.initrd]).code).toBe(0);
  });

  afterAll(async () => {
    await env?.cleanup();
    ns?.destroy();
  });

  it('one create per name wins, with distinct addresses and TAPs, and removing them all leaves nothing', async () => {
    const asks = NAMES.flatMap((name) => Array.from({ length: TRIES_PER_NAME }, () => name));
    const results: { name: string; r: RunResult }[] = await Promise.all(
      asks.map(async (name) => ({ name, r: await env.cliAsync(['vm', 'create', '--name', name, '--image', 'base', '--json'], { prefix: ns.prefix }) })),
    );

    const winners: any[] = [];
    for (const name of NAMES) {
      const mine = results.filter((x) => x.name === name);
      const won = mine.filter((x) => x.r.code === 0);
      expect(won, `${name}: ${mine.map((x) => x.r.stderr.trim()).join(' | ')}`).toHaveLength(1);
      for (const lost of mine.filter((x) => x.r.code !== 0)) {
        expect(lost.r.code).toBe(1);
        expect(lost.r.stderr).toMatch(new RegExp(`^banger: a VM named "${name}" already exists`));
      }
      winners.push(JSON.parse(won[0].r.stdout));
    }

    const vms = json<any[]>(['vm', 'ls']);
    expect(vms.map((v) => v.name).sort()).toEqual([...NAMES].sort());
    for (const field of ['id', 'guestIp', 'hostIp', 'tap', 'mac', 'pid']) {
      expect(new Set(vms.map((v) => v[field])).size, field).toBe(NAMES.length);
    }
    for (const vm of vms) {
      expect(vm.state).toBe('running');
      expect(isAlive(vm.pid)).toBe(true);
      expect(ns.links()).toContain(vm.tap);
      expect(ns.rules().filter((r) => r.includes(`banger:${vm.id}`))).toHaveLength(3);
    }
    expect(winners.map((w) => w.id).sort()).toEqual(vms.map((v) => v.id).sort());

    const removals = await Promise.all(NAMES.map((name) => env.cliAsync(['vm', 'rm', '--force', name], { prefix: ns.prefix })));
    for (const r of removals) expect(r.code, r.stderr).toBe(0);

    expect(json<any[]>(['vm', 'ls'])).toEqual([]);
    expect(ns.links().filter((l) => !['lo', ns.uplink, 'up0peer'].includes(l))).toEqual([]);
    expect(ns.rules()).toEqual([]);
    expect(firecrackersUnder(env.dir)).toEqual([]);
    for (const vm of vms) expect(isAlive(vm.pid)).toBe(false);
    const sockets = join(env.env.XDG_RUNTIME_DIR, 'banger', 'vms');
    expect(existsSync(sockets) ? readdirSync(sockets) : []).toEqual([]);
    expect(readdirSync(join(env.stateDir, 'vms'))).toEqual([]);
    const db = new Database(env.database, { readonly: true, fileMustExist: true });
    try {
      expect(db.prepare('SELECT * FROM resources').all()).toEqual([]);
      expect(db.prepare('SELECT count(*) AS n FROM vms').get()).toEqual({ n: 0 });
    } finally {
      db.close();
    }
  }, 120_000);
});
