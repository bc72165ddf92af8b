// What every command needs: settings, a daemon connection, and whether to show progress.
import { loadConfig, type LoadedConfig } from '../core/config.js';
import { DaemonClient, cliBuildId, isNoDaemon, isStaleDaemon, replaceDaemon, startDaemonProcess } from './client.js';
import { showProgress } from './progress.js';

export class CliContext {
  private config?: LoadedConfig;
  private client?: DaemonClient;

  getConfig(): LoadedConfig {
    return (this.config ??= loadConfig(process.env));
  }

  /**
   * Calls a method, showing its progress phases on a TTY. The call carries this CLI's build id:
   * with no daemon, one is started; a daemon of another build refuses the call before doing
   * anything, and is replaced; then the call is made again. One round trip in the usual case.
   */
  async call<T>(method: string, body: unknown, opts: { progress?: boolean } = {}): Promise<T> {
    const config = this.getConfig();
    const client = (this.client ??= new DaemonClient(config.settings.socket, 0, cliBuildId(config)));
    const notice = (m: string) => {
      if (process.stderr.isTTY) process.stderr.write(`${m}\n`);
    };
    const attempt = async () => {
      const progress = await showProgress(client, (opts.progress ?? false) && process.stderr.isTTY === true);
      try {
        return await client.call<T>(method, body, { opId: progress.opId });
      } finally {
        progress.stop();
      }
    };
    try {
      return await attempt();
    } catch (err) {
      if (isNoDaemon(err)) await startDaemonProcess(config, client);
      else if (isStaleDaemon(err)) await replaceDaemon(config, client, notice);
      else throw err;
    }
    return attempt();
  }
}
