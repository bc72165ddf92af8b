// Runs a benchmark written in TypeScript: bundles bench/<name>.ts with esbuild, then runs it.
// Usage: node bench/run.mjs <name> [args...]   (no name: every bench/*.ts)
import { build } from 'esbuild';
import { spawnSync } from 'node:child_process';
import { readdirSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const outDir = join(root, '.bench-out');
mkdirSync(outDir, { recursive: true });
const [name, ...args] = process.argv.slice(2);
const names = name ? [name] : readdirSync(join(root, 'bench')).filter((f) => f.endsWith('.ts')).map((f) => f.slice(0, -3));
let failed = 0;
for (const n of names) {
  const outfile = join(outDir, `${n}.mjs`);
  await build({
    entryPoints: [join(root, 'bench', `${n}.ts`)],
    outfile,
    bundle: true,
    platform: 'node',
    target: 'node20',
    format: 'esm',
    packages: 'external',
    logLevel: 'warning',
  });
  console.log(`== bench/${n}.ts`);
  const r = spawnSync(process.execPath, [outfile, ...args], { stdio: 'inherit', cwd: root });
  if (r.status !== 0) failed++;
}
process.exit(failed ? 1 : 0);
