// bangerd: the process entry point.
import { startDaemon } from './compose.js';
import { BangerError } from '../core/errors.js';
import { VERSION, buildId } from '../core/build-info.js';

const USAGE = `usage: bangerd [--help] [--version]

The banger daemon. It serves the API on its Unix socket (BANGER_SOCKET, or
$XDG_RUNTIME_DIR/banger/bangerd.sock) and logs to $XDG_STATE_HOME/banger/bangerd.log.
The banger CLI starts it when needed; SIGTERM or "banger daemon stop" stops it
(running VMs keep running).
`;

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  if (args.includes('--help') || args.includes('-h')) {
    process.stdout.write(USAGE);
    return;
  }
  if (args.includes('--version')) {
    process.stdout.write(`${VERSION} (build ${buildId()})\n`);
    return;
  }
  if (args.length > 0) {
    process.stderr.write(`bangerd: unknown argument "${args[0]}"\n${USAGE}`);
    process.exit(2);
  }
  // A stray rejection in a background task (the crash watcher, an event stream) is logged, not
  // fatal: the daemon holds every VM's bookkeeping and must outlive its own bugs.
  process.on('unhandledRejection', (reason) => {
    process.stderr.write(`bangerd: unhandled rejection: ${reason instanceof Error ? (reason.stack ?? reason.message) : String(reason)}\n`);
  });
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
