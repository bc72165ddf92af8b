// Rebuilds a test process's bundle in dist/ when it is missing or older than its sources, for
// tests run without `npm run build`; the new file is renamed into place whole.
import { build } from 'esbuild';
import { existsSync, readdirSync, renameSync, statSync } from 'node:fs';
import { join } from 'node:path';

export const ROOT_DIR = new URL('../..', import.meta.url).pathname;

function newestMtime(dir: string): number {
  let newest = 0;
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    const st = statSync(p);
    newest = Math.max(newest, st.isDirectory() ? newestMtime(p) : st.mtimeMs);
  }
  return newest;
}

/** entry and sourceDirs are relative to the repository; returns the bundle's path. */
export async function ensureBundle(entry: string, bundle: string, sourceDirs: string[]): Promise<string> {
  const newest = Math.max(...sourceDirs.map((d) => newestMtime(join(ROOT_DIR, d))));
  if (existsSync(bundle) && statSync(bundle).mtimeMs >= newest) return bundle;
  const tmp = `${bundle}.${process.pid}.tmp`;
  await build({ entryPoints: [join(ROOT_DIR, entry)], bundle: true, platform: 'node', target: 'node20', format: 'esm', outfile: tmp, logLevel: 'warning' });
  renameSync(tmp, bundle);
  return bundle;
}
