// banger tui: loaded with import() only when `banger tui` runs. The TUI's composition root:
// the real terminal, the daemon-backed client, and the Ink app.
import { render } from 'ink';
import type { CliContext } from '../cli/context.js';
import { CliError } from '../cli/errors.js';
import { connectDaemon } from '../cli/client.js';
import { App } from './app.js';
import { DaemonTuiClient } from './daemon-client.js';
import { Terminal } from './screen.js';
import { themeFor } from './theme.js';

export async function runTui(cli: CliContext): Promise<void> {
  if (!process.stdin.isTTY || !process.stdout.isTTY) {
    throw new CliError('banger tui needs a terminal (stdin and stdout must be a TTY); use banger vm ls for scripts');
  }
  // Settings and the daemon first: their errors print as any CLI error, before the screen changes.
  const config = cli.getConfig();
  await connectDaemon(config, { autostart: true, onNotice: (m) => process.stderr.write(`${m}\n`) });
  const terminal = new Terminal(process.stdin, process.stdout);
  const client = new DaemonTuiClient(config, terminal);
  terminal.open();
  // kill(1) gets the same clean exit as q: the screen back, the stream closed. The listener stays
  // until the app is gone: while it is there, Ink's signal-exit does not re-raise the signal.
  let app: ReturnType<typeof render> | null = null;
  const onTerm = () => {
    process.exitCode = 143;
    app?.unmount();
  };
  process.on('SIGTERM', onTerm);
  try {
    app = render(<App client={client} theme={themeFor(process.env)} />, {
      stdout: terminal.output as unknown as NodeJS.WriteStream,
      stdin: process.stdin,
      exitOnCtrlC: true,
      patchConsole: false,
    });
    await app.waitUntilExit();
  } finally {
    process.off('SIGTERM', onTerm);
    terminal.close();
  }
}
