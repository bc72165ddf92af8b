// Runs scripts/customize-rootfs.sh on a rootfs file with banger's SSH public key.
import { join } from 'node:path';
import type { Logger } from 'pino';
import { wrapError } from '../core/errors.js';
import { installRoot } from '../core/install-root.js';
import type { Paths } from '../core/paths.js';
import type { Runner } from '../core/ports.js';
import { ensureSshKey } from '../host/ssh.js';
import type { Progress } from './service.js';

export async function customizeRootfsWithScript(deps: { runner: Runner; paths: Paths; log: Logger }, rootfsFile: string, progress: Progress): Promise<void> {
  await ensureSshKey(deps.runner, deps.paths.sshKey);
  progress.phase('image.customize', 'installing the SSH key and boot units');
  try {
    await deps.runner.run([join(installRoot(), 'scripts', 'customize-rootfs.sh'), rootfsFile, `${deps.paths.sshKey}.pub`], { timeoutMs: 120_000 });
  } catch (err) {
    throw wrapError(`customizing ${rootfsFile}`, err);
  }
}
