// Makes sure dist/fc-standin.js is built from the current sources, for tests run without `npm run build`.
import { build } from 'esbuild';
import { existsSync, readdirSync, renameSync, statSync } from 'node:fs';
import { join } from 'node:path';

const root = new URL('../..', import.meta.url).pathname;
export const STANDIN_BUNDLE = join(root, 'dist/fc-standin.js');
/** The `firecracker` stand-in executable (a shell script that execs node on the bundle). */
export const STANDIN_BINARY = join(root, 'test/fc-standin/firecracker');
/** The directory holding STANDIN_BINARY, to put first on PATH. */
export const STANDIN_DIR = join(root, 'test/fc-standin');

function newestMtime(dir: string): number {
  let newest = 0;
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    const st = statSync(p);
    newest = Math.max(newest, st.isDirectory() ? newestMtime(p) : st.mtimeMs);
  }
  return newest;
}

/** Rebuilds the bundle when it is missing or older than its sources; the new file is renamed into place whole. */
export async function ensureStandinBuilt(): Promise<string> {
  const sourcesMtime = Math.max(newestMtime(join(root, 'test/fc-standin')), newestMtime(join(root, 'src/firecracker')));
  if (existsSync(STANDIN_BUNDLE) && statSync(STANDIN_BUNDLE).mtimeMs >= sourcesMtime) return STANDIN_BUNDLE;
  const tmp = `${STANDIN_BUNDLE}.${process.pid}.tmp`;
  await build({
    entryPoints: [join(root, 'test/fc-standin/main.ts')],
    bundle: true,
    platform: 'node',
    target: 'node20',
    format: 'esm',
    outfile: tmp,
    logLevel: 'warning',
  });
  renameSync(tmp, STANDIN_BUNDLE);
  return STANDIN_BUNDLE;
}
