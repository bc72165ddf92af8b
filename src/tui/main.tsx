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
  try {
    const app = render(<App client={client} theme={themeFor(process.env)} />, {
      stdout: terminal.output as unknown as NodeJS.WriteStream,
      stdin: process.stdin,
      exitOnCtrlC: true,
      patchConsole: false,
    });
    await app.waitUntilExit();
  } finally {
    terminal.close();
  }
}
