// host.doctor and host.gc.
import { FailedPreconditionError } from '../core/errors.js';
import type { DaemonDeps } from './daemon.js';
import type { VmRuntime } from './vm-runtime.js';

export async function doctor(_deps: DaemonDeps, _runtime: VmRuntime): Promise<unknown> {
  throw new FailedPreconditionError('doctor is not implemented yet');
}

export async function gc(_deps: DaemonDeps, _runtime: VmRuntime, _dryRun: boolean): Promise<unknown> {
  throw new FailedPreconditionError('gc is not implemented yet');
}
