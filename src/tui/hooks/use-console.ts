// A VM's serial console: its last lines for the details pane (read again on each clock tick,
// from the local file, not the daemon) and the followed stream for the logs screen.
import { useEffect, useState, type Dispatch } from 'react';
import { errorMessage } from '../client.js';
import { useClient } from '../context.js';
import { cleanLine, type LogsAction } from '../state/logs.js';

export function useConsoleTail(vmId: string | null, lines: number, tick: number): string[] {
  const client = useClient();
  const [tail, setTail] = useState<string[]>([]);
  useEffect(() => {
    if (!vmId || lines <= 0) {
      setTail((cur) => (cur.length === 0 ? cur : []));
      return;
    }
    let isCurrent = true;
    client.consoleTail(vmId, lines).then(
      (got) => {
        if (!isCurrent) return;
        const clean = got.map(cleanLine);
        // Same lines, same array: nothing to render.
        setTail((cur) => (cur.length === clean.length && cur.every((l, i) => l === clean[i]) ? cur : clean));
      },
      () => isCurrent && setTail([]),
    );
    return () => {
      isCurrent = false;
    };
  }, [client, vmId, lines, tick]);
  return tail;
}

export function useConsoleFollow(vmId: string | null, dispatch: Dispatch<LogsAction>): void {
  const client = useClient();
  useEffect(() => {
    if (!vmId) return;
    dispatch({ type: 'open', vmId });
    const ac = new AbortController();
    client
      .followConsole(vmId, (chunk) => dispatch({ type: 'append', chunk }), ac.signal)
      .catch((err) => !ac.signal.aborted && dispatch({ type: 'failed', error: errorMessage(err) }));
    return () => ac.abort();
  }, [client, vmId, dispatch]);
}
