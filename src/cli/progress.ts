// Shows an operation's progress phases on stderr, only when stderr is a TTY.
import type { DaemonClient } from './client.js';

export interface ProgressHandle {
  opId: string;
  stop: () => void;
}

export async function showProgress(client: DaemonClient, enabled: boolean): Promise<ProgressHandle> {
  const opId = `${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 12)}`;
  if (!enabled) return { opId, stop: () => {} };
  const started = Date.now();
  let phase = 'waiting for the daemon';
  let detail = '';
  const render = () => {
    const secs = ((Date.now() - started) / 1000).toFixed(1);
    process.stderr.write(`\r\x1b[2K${phase}${detail ? ` (${detail})` : ''} ${secs}s`);
  };
  const timer = setInterval(render, 100);
  let stream: { close: () => void } | null = null;
  try {
    stream = await client.events((e) => {
      if (e.type === 'progress' && e.opId === opId) {
        phase = String(e.phase);
        detail = typeof e.detail === 'string' ? e.detail : '';
        render();
      }
    });
  } catch {
    // progress is best effort
  }
  return {
    opId,
    stop: () => {
      clearInterval(timer);
      stream?.close();
      process.stderr.write('\r\x1b[2K');
    },
  };
}
