// Makes sure dist/fc-qemu.js is built from the current sources, for tests run without `npm run build`.
import { build } from 'esbuild';
import { existsSync, readdirSync, renameSync, statSync } from 'node:fs';
import { join } from 'node:path';

const root = new URL('../..', import.meta.url).pathname;
export const FC_QEMU_BUNDLE = join(root, 'dist/fc-qemu.js');
/** The `firecracker` executable that runs the QEMU stand-in: give it to the daemon as BANGER_FIRECRACKER. */
export const FC_QEMU_FIRECRACKER = join(root, 'test/fc-qemu/firecracker');

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
export async function ensureFcQemuBuilt(): Promise<string> {
  const sources = ['test/fc-qemu', 'test/fc-standin', 'src/firecracker'].map((d) => newestMtime(join(root, d)));
  if (existsSync(FC_QEMU_BUNDLE) && statSync(FC_QEMU_BUNDLE).mtimeMs >= Math.max(...sources)) return FC_QEMU_BUNDLE;
  const tmp = `${FC_QEMU_BUNDLE}.${process.pid}.tmp`;
  await build({
    entryPoints: [join(root, 'test/fc-qemu/main.ts')],
    bundle: true,
    platform: 'node',
    target: 'node20',
    format: 'esm',
    outfile: tmp,
    logLevel: 'warning',
  });
  renameSync(tmp, FC_QEMU_BUNDLE);
  return FC_QEMU_BUNDLE;
}
