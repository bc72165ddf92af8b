// Keeps the VM list in step with the daemon: one event stream, the list fetched once per
// (re)connect, events applied as they come; a closed stream is retried with backoff.
import { useEffect, useRef, type Dispatch } from 'react';
import { errorMessage, type Subscription, type TuiEvent } from '../client.js';
import { useClient } from '../context.js';
import { backoffMs, type VmsAction } from '../state/vms.js';

export type ProgressEvent = Extract<TuiEvent, { type: 'progress' }>;

export interface SyncOptions {
  retryBaseMs?: number;
  retryMaxMs?: number;
}

export function useDaemonSync(
  dispatch: Dispatch<VmsAction>,
  onProgress: (e: ProgressEvent) => void,
  options: SyncOptions = {},
  onNotice?: (text: string) => void,
): void {
  const client = useClient();
  const progressRef = useRef(onProgress);
  progressRef.current = onProgress;
  const noticeRef = useRef(onNotice);
  noticeRef.current = onNotice;
  const { retryBaseMs = 250, retryMaxMs = 5000 } = options;

  useEffect(() => {
    let isStopped = false;
    let subscription: Subscription | null = null;
    let timer: NodeJS.Timeout | undefined;
    let attempt = 0;
    // Answers that belong to an older connection are dropped.
    let generation = 0;

    const retry = (gen: number, err: unknown) => {
      if (isStopped || gen !== generation) return;
      generation++;
      subscription?.close();
      subscription = null;
      attempt += 1;
      const delay = backoffMs(attempt, retryBaseMs, retryMaxMs);
      dispatch({ type: 'connection.lost', attempt, retryAt: Date.now() + delay, error: errorMessage(err) });
      timer = setTimeout(() => void connect(), delay);
    };

    const refetch = async (gen: number) => {
      try {
        const [vms, images] = await Promise.all([client.list(), client.images()]);
        if (isStopped || gen !== generation) return;
        dispatch({ type: 'images.loaded', images });
        dispatch({ type: 'sync.done', vms });
        attempt = 0;
      } catch (err) {
        retry(gen, err);
      }
    };

    const onEvent = (gen: number, e: TuiEvent) => {
      if (isStopped || gen !== generation) return;
      switch (e.type) {
        case 'hello':
          dispatch({ type: 'sync.begin' });
          void refetch(gen);
          break;
        case 'vm.state':
          dispatch({ type: 'vm.state', vm: e.vm });
          break;
        case 'vm.deleted':
          dispatch({ type: 'vm.deleted', vmId: e.vmId });
          break;
        case 'image.changed':
          client.images().then(
            (images) => gen === generation && !isStopped && dispatch({ type: 'images.loaded', images }),
            () => undefined,
          );
          break;
        case 'progress':
          progressRef.current(e);
          break;
      }
    };

    const connect = async () => {
      const gen = ++generation;
      try {
        const s = await client.subscribe({
          onEvent: (e) => onEvent(gen, e),
          onClose: (err) => retry(gen, err ?? new Error('the event stream ended')),
          onNotice: (text) => noticeRef.current?.(text),
        });
        if (isStopped || gen !== generation) s.close();
        else subscription = s;
      } catch (err) {
        retry(gen, err);
      }
    };

    void connect();
    return () => {
      isStopped = true;
      clearTimeout(timer);
      subscription?.close();
    };
  }, [client, dispatch, retryBaseMs, retryMaxMs]);
}
