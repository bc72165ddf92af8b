// Test-only Runner that runs every command inside a network namespace (`ip netns exec NS ...`),
// so privileged tests touch only the namespace they made.
import type { RunOptions, RunResult, Runner, SpawnOptions, SpawnedProcess } from '../../src/core/ports.js';
import { ExecRunner } from '../../src/host/runner.js';

export class NetnsRunner implements Runner {
  constructor(
    readonly namespace: string,
    private readonly inner: Runner = new ExecRunner(),
  ) {}

  run(argv: string[], options?: RunOptions): Promise<RunResult> {
    return this.inner.run(['ip', 'netns', 'exec', this.namespace, ...argv], options);
  }

  spawn(argv: string[], options?: SpawnOptions): SpawnedProcess {
    return this.inner.spawn(['ip', 'netns', 'exec', this.namespace, ...argv], options);
  }
}
