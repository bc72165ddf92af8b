// A Runner for a daemon that is not root: the privileged host tools run through `sudo -n`
// (passwordless sudo for exactly these tools; see docs/sudoers.md), everything else directly.
import type { RunOptions, RunResult, Runner, SpawnOptions, SpawnedProcess } from '../core/ports.js';

/** The tools banger needs root for. The sudoers snippet lists the same. */
export const PRIVILEGED_TOOLS = ['losetup', 'dmsetup', 'blockdev', 'ip', 'iptables', 'sysctl', 'e2fsck', 'resize2fs', 'debugfs', 'kill', 'chown', 'rm'] as const;

export class SudoRunner implements Runner {
  constructor(private readonly inner: Runner) {}

  private wrap(argv: string[]): string[] {
    return (PRIVILEGED_TOOLS as readonly string[]).includes(argv[0]) ? ['sudo', '-n', ...argv] : argv;
  }

  run(argv: string[], options?: RunOptions): Promise<RunResult> {
    return this.inner.run(this.wrap(argv), options);
  }

  spawn(argv: string[], options?: SpawnOptions): SpawnedProcess {
    return this.inner.spawn(argv, options);
  }
}
