// The operations the user starts: each gets an opId (its progress events carry it), shows in
// the status area while it runs, and ends as "done" or with the daemon's error message.
import { useMemo, type Dispatch } from 'react';
import type { VmView } from '../../core/models.js';
import { errorMessage, newOpId, type CreateRequest } from '../client.js';
import { useClient } from '../context.js';
import type { OpKind, UiAction } from '../state/ui.js';

export interface Actions {
  create(request: CreateRequest, label: string): void;
  start(vm: VmView): void;
  stop(vm: VmView, force?: boolean): void;
  restart(vm: VmView): void;
  remove(vm: VmView): void;
  /** Lends the terminal to an ssh session on vm; resolves when the TUI has it back. */
  ssh(vm: VmView): Promise<void>;
}

export function useActions(dispatch: Dispatch<UiAction>): Actions {
  const client = useClient();
  return useMemo(() => {
    const run = (kind: OpKind, target: string, vmId: string | null, call: (opId: string) => Promise<unknown>) => {
      const opId = newOpId();
      dispatch({ type: 'op.begin', opId, kind, target, vmId, at: Date.now() });
      call(opId).then(
        (result) => {
          const id = (result as Partial<VmView> | null)?.id;
          dispatch({ type: 'op.done', opId, at: Date.now(), ...(typeof id === 'string' ? { vmId: id } : {}) });
        },
        (err) => dispatch({ type: 'op.failed', opId, at: Date.now(), error: errorMessage(err) }),
      );
    };
    return {
      create: (request, label) => run('create', label, null, (opId) => client.create(request, opId)),
      start: (vm) => run('start', vm.name, vm.id, (opId) => client.start(vm.id, opId)),
      stop: (vm, force = false) => run('stop', vm.name, vm.id, (opId) => client.stop(vm.id, opId, { force })),
      restart: (vm) => run('restart', vm.name, vm.id, (opId) => client.restart(vm.id, opId)),
      // A running VM is stopped first: the user confirmed, and said so in the dialog.
      remove: (vm) => run('delete', vm.name, vm.id, (opId) => client.delete(vm.id, opId, { force: vm.state !== 'stopped' && vm.state !== 'error' })),
      ssh: async (vm) => {
        if (vm.state !== 'running') {
          dispatch({ type: 'notice', notice: { tone: 'error', text: `${vm.name} is ${vm.state}: start it first (s)` } });
          return;
        }
        dispatch({ type: 'suspend', reason: `ssh ${vm.name}` });
        try {
          const code = await client.ssh(vm);
          if (code === 255) {
            dispatch({ type: 'notice', notice: { tone: 'error', text: `ssh to ${vm.name} (${vm.guestIp}) failed; is the guest up? its console: l` } });
          } else {
            dispatch({ type: 'notice', notice: { tone: 'info', text: `ssh session on ${vm.name} ended (exit ${code})` } });
          }
        } catch (err) {
          dispatch({ type: 'notice', notice: { tone: 'error', text: `ssh to ${vm.name}: ${errorMessage(err)}` } });
        } finally {
          dispatch({ type: 'resume' });
        }
      },
    };
  }, [client, dispatch]);
}
