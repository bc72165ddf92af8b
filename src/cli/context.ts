// What every command needs: settings, a daemon connection, and whether to show progress.
import { loadConfig, type LoadedConfig } from '../core/config.js';
import { connectDaemon, type DaemonClient } from './client.js';
import { showProgress } from './progress.js';

export class CliContext {
  private config?: LoadedConfig;
  private client?: DaemonClient;

  getConfig(): LoadedConfig {
    return (this.config ??= loadConfig(process.env));
  }

  async connect(): Promise<DaemonClient> {
    if (this.client) return this.client;
    const { client } = await connectDaemon(this.getConfig(), {
      autostart: true,
      onNotice: (m) => {
        if (process.stderr.isTTY) process.stderr.write(`${m}\n`);
      },
    });
    return (this.client = client);
  }

  /** Calls a method, showing its progress phases on a TTY. */
  async call<T>(method: string, body: unknown, opts: { progress?: boolean } = {}): Promise<T> {
    const client = await this.connect();
    const progress = await showProgress(client, (opts.progress ?? false) && process.stderr.isTTY === true);
    try {
      return await client.call<T>(method, body, { opId: progress.opId });
    } finally {
      progress.stop();
    }
  }
}
