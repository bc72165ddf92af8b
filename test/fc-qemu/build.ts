// Makes sure dist/fc-qemu.js is built from the current sources, for tests run without `npm run build`.
import { join } from 'node:path';
import { ROOT_DIR, ensureBundle } from '../helpers/bundle.js';

export const FC_QEMU_BUNDLE = join(ROOT_DIR, 'dist/fc-qemu.js');
/** The `firecracker` executable that runs the QEMU stand-in: give it to the daemon as BANGER_FIRECRACKER. */
export const FC_QEMU_FIRECRACKER = join(ROOT_DIR, 'test/fc-qemu/firecracker');

export function ensureFcQemuBuilt(): Promise<string> {
  return ensureBundle('test/fc-qemu/main.ts', FC_QEMU_BUNDLE, ['test/fc-qemu', 'test/fc-standin', 'src/firecracker']);
}
