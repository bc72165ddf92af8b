// `banger vm ls --json` with 100 VMs in the store: median wall time, and its ratio to `node -e 0`
// measured in the same run. Target: ratio <= 2.5.
import { spawnSync } from 'node:child_process';
import { BangerEnv, makeImageFiles } from '../test/helpers/banger-env.js';
import { openDatabase } from '../src/store/db.js';
import { Store } from '../src/store/store.js';
import { join } from 'node:path';

const RUNS = Number(process.env.BENCH_RUNS ?? 30);

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

function time(argv: string[], env: Record<string, string>): number {
  const t = process.hrtime.bigint();
  const r = spawnSync(argv[0], argv.slice(1), { env, encoding: 'utf8' });
  const ms = Number(process.hrtime.bigint() - t) / 1e6;
  if (r.status !== 0) throw new Error(`${argv.join(' ')} failed: ${r.stderr}`);
  return ms;
}

const env = new BangerEnv();
try {
  const files = makeImageFiles(join(env.dir, 'src'), 4);
  const img = env.json<{ id: string }>(['image', 'add', 'base', '--kernel', files.kernel, '--rootfs', files.rootfs]);
  env.cli(['daemon', 'stop']);
  const store = new Store(openDatabase(env.database));
  for (let i = 0; i < 100; i++) {
    const id = i.toString(16).padStart(12, '0');
    store.insertVm(
      { id, name: `vm-${i}`, imageId: img.id, vcpus: 1, memoryMib: 512, diskSizeBytes: 4 << 20, nat: true, diskStrategy: 'copy', createdAt: new Date().toISOString() },
      'stopped',
      () => ({ netIndex: i, hostIp: `172.16.${i >> 6}.${((i * 4) & 255) + 1}`, guestIp: `172.16.${i >> 6}.${((i * 4) & 255) + 2}`, tap: `bg${id}`, mac: '06:00:00:00:00:00' }),
    );
  }
  store.db.close();
  const cmd = [process.execPath, join(process.cwd(), 'bin/banger'), 'vm', 'ls', '--json'];
  const first = spawnSync(cmd[0], cmd.slice(1), { env: env.env, encoding: 'utf8' });
  const count = JSON.parse(first.stdout).length;
  if (count !== 100) throw new Error(`expected 100 VMs, got ${count}`);
  const node: number[] = [];
  const ls: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    node.push(time([process.execPath, '-e', '0'], env.env));
    ls.push(time(cmd, env.env));
  }
  const mNode = median(node);
  const mLs = median(ls);
  console.log(`node -e 0:              median ${mNode.toFixed(1)} ms (${RUNS} runs)`);
  console.log(`banger vm ls --json:    median ${mLs.toFixed(1)} ms (${RUNS} runs, 100 VMs)`);
  console.log(`ratio:                  ${(mLs / mNode).toFixed(2)} (target <= 2.5)`);
} finally {
  await env.cleanup();
}
