// Bundles the entry points with esbuild. The CLI bundle excludes the daemon and the TUI,
// which it never imports statically (the TUI is loaded with import() only for `banger tui`).
import { build as esbuild } from 'esbuild';
import { createHash } from 'node:crypto';
import { readFileSync, readdirSync, statSync, mkdirSync, writeFileSync, renameSync } from 'node:fs';
import { join } from 'node:path';

const root = new URL('..', import.meta.url).pathname;

function hashTree(dir, h) {
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) hashTree(p, h);
    else h.update(p.slice(root.length)).update(readFileSync(p));
  }
}
const h = createHash('sha256');
hashTree(join(root, 'src'), h);
h.update(readFileSync(join(root, 'package.json')));
const buildId = h.digest('hex').slice(0, 12);
const version = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).version;

const common = {
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'esm',
  sourcemap: 'linked',
  logLevel: 'warning',
  external: ['better-sqlite3', 'pino', 'ink', 'react', 'react/jsx-runtime', './tui.js'],
  define: { __BANGER_BUILD_ID__: JSON.stringify(buildId), __BANGER_VERSION__: JSON.stringify(version) },
  banner: { js: "import { createRequire as __bangerRequire } from 'node:module'; const require = __bangerRequire(import.meta.url);" },
  jsx: 'automatic',
  minify: true,
  keepNames: true,
};

mkdirSync(join(root, 'dist'), { recursive: true });

// Each output is written beside its place and renamed over it, so that a process starting during
// a build (a daemon, a stand-in) reads either the old file or the new one, never half of one.
async function build(options) {
  const result = await esbuild({ ...options, write: false });
  for (const file of result.outputFiles) {
    const tmp = `${file.path}.${process.pid}.tmp`;
    writeFileSync(tmp, file.contents);
    renameSync(tmp, file.path);
  }
  return result;
}

await Promise.all([
  // The CLI is CommonJS: an ESM import of a builtin such as node:fs evaluates all its exports
  // (node:fs loads fs/promises, ~8 ms), and start-up time is what the CLI is measured by.
  build({
    ...common,
    format: 'cjs',
    entryPoints: [join(root, 'src/cli/main.ts')],
    outfile: join(root, 'dist/banger.cjs'),
    banner: { js: "const __bangerMetaUrl = require('node:url').pathToFileURL(__filename).href;" },
    define: { ...common.define, 'import.meta.url': '__bangerMetaUrl' },
  }),
  build({ ...common, entryPoints: [join(root, 'src/daemon/main.ts')], outfile: join(root, 'dist/bangerd.js') }),
  build({ ...common, entryPoints: [join(root, 'src/tui/main.tsx')], outfile: join(root, 'dist/tui.js') }),
  build({ ...common, entryPoints: [join(root, 'test/fc-standin/main.ts')], outfile: join(root, 'dist/fc-standin.js') }),
  build({ ...common, entryPoints: [join(root, 'test/fc-qemu/main.ts')], outfile: join(root, 'dist/fc-qemu.js') }),
]);
writeFileSync(join(root, 'dist/BUILD_ID'), buildId + '\n');
console.log(`built dist/ (build ${buildId})`);
