// Makes sure dist/fc-standin.js is built from the current sources, for tests run without `npm run build`.
import { join } from 'node:path';
import { ROOT_DIR, ensureBundle } from '../helpers/bundle.js';

export const STANDIN_BUNDLE = join(ROOT_DIR, 'dist/fc-standin.js');
/** The `firecracker` stand-in executable (a shell script that execs node on the bundle). */
export const STANDIN_BINARY = join(ROOT_DIR, 'test/fc-standin/firecracker');
/** The directory holding STANDIN_BINARY, to put first on PATH. */
export const STANDIN_DIR = join(ROOT_DIR, 'test/fc-standin');

export function ensureStandinBuilt(): Promise<string> {
  return ensureBundle('test/fc-standin/main.ts', STANDIN_BUNDLE, ['test/fc-standin', 'src/firecracker']);
}
