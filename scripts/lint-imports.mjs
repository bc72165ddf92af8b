// Keeps imports pointing inward: src/core imports nothing of the adapters, the CLI nothing of
// the daemon or the TUI (statically), and nothing imports from test/.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const rules = [
  { from: 'src/core/', forbid: ['src/host/', 'src/firecracker/', 'src/store/', 'src/daemon/', 'src/cli/', 'src/tui/'] },
  { from: 'src/cli/', forbid: ['src/daemon/', 'src/store/', 'src/tui/'] },
  { from: 'src/host/', forbid: ['src/daemon/', 'src/cli/', 'src/tui/', 'src/store/'] },
  { from: 'src/firecracker/', forbid: ['src/daemon/', 'src/cli/', 'src/tui/', 'src/store/'] },
  { from: 'src/store/', forbid: ['src/daemon/', 'src/cli/', 'src/tui/'] },
  { from: 'src/', forbid: ['test/'] },
];

function files(dir) {
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n);
    return statSync(p).isDirectory() ? files(p) : /\.(ts|tsx)$/.test(n) ? [p] : [];
  });
}

let bad = 0;
for (const file of files(join(root, 'src'))) {
  const rel = relative(root, file);
  const text = readFileSync(file, 'utf8');
  // static imports only: import ... from '...'; export ... from '...'
  for (const m of text.matchAll(/^\s*(?:import|export)\s[^'"]*?from\s+['"](\.[^'"]+)['"]/gm)) {
    if (/^\s*import\s+type\s/.test(m[0])) continue;
    const target = relative(root, join(file, '..', m[1]));
    for (const rule of rules) {
      if (rel.startsWith(rule.from) && rule.forbid.some((f) => target.startsWith(f))) {
        console.error(`${rel}: imports ${target} (${rule.from} must not import ${rule.forbid.join(', ')})`);
        bad++;
      }
    }
  }
}
if (bad) process.exit(1);
console.log('imports point inward');
