// The package's root directory (where scripts/ and dist/ live), found from this module's URL
// so that it works both from the bundle in dist/ and from the sources under src/.
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

let cached: string | undefined;

export function installRoot(): string {
  if (cached) return cached;
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    if (existsSync(join(dir, 'package.json')) && existsSync(join(dir, 'scripts'))) return (cached = dir);
    dir = dirname(dir);
  }
  throw new Error(`cannot find banger's install directory above ${fileURLToPath(import.meta.url)}`);
}
