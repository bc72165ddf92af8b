// bangerd: the process entry point.
import { startDaemon } from './compose.js';
import { BangerError } from '../core/errors.js';

async function main(): Promise<void> {
  const running = await startDaemon();
  for (const sig of ['SIGTERM', 'SIGINT'] as const) {
    process.on(sig, () => void running.stop());
  }
  process.on('SIGHUP', () => {});
  await running.done;
  process.exit(0);
}

main().catch((err) => {
  const msg = err instanceof BangerError ? err.message : err instanceof Error ? err.stack ?? err.message : String(err);
  process.stderr.write(`bangerd: ${msg}\n`);
  process.exit(1);
});
