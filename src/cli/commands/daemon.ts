// banger daemon start | stop | status
import type { Command } from 'commander';
import { connectDaemon, DaemonClient, tryInfo, waitForDaemonGone, waitForPidGone, type DaemonInfo } from '../client.js';
import type { CliContext } from '../context.js';
import { CliError } from '../errors.js';
import { keyValues, printJson } from '../output.js';

function printInfo(info: DaemonInfo, json: boolean): void {
  if (json) return printJson(info);
  process.stdout.write(
    keyValues([
      ['pid', String(info.pid)],
      ['version', info.version],
      ['build', info.buildId],
      ['started', info.startedAt],
      ['socket', String(info.socket ?? '')],
      ['log', String(info.log ?? '')],
    ]),
  );
}

export function registerDaemon(program: Command, cli: CliContext): void {
  const daemon = program.command('daemon').description('manage bangerd, the daemon that owns all state');
  daemon
    .command('start')
    .description('start bangerd (or replace one of another build)')
    .option('--json', 'print daemon.info as JSON')
    .action(async (opts: { json?: boolean }) => {
      const { info } = await connectDaemon(cli.getConfig(), { autostart: true });
      printInfo(info!, opts.json ?? false);
    });
  daemon
    .command('stop')
    .description('stop bangerd (running VMs keep running)')
    .action(async () => {
      const client = new DaemonClient(cli.getConfig().settings.socket);
      const info = await tryInfo(client);
      if (!info) {
        process.stderr.write('bangerd is not running\n');
        return;
      }
      await client.call('daemon.shutdown');
      if (!(await waitForDaemonGone(client, 10_000)) || !(await waitForPidGone(info.pid, 5000))) throw new CliError(`bangerd (pid ${info.pid}) did not stop within 10 s; kill it with kill ${info.pid}`);
    });
  daemon
    .command('status')
    .description('show whether bangerd runs, and which build')
    .option('--json', 'print daemon.info as JSON')
    .action(async (opts: { json?: boolean }) => {
      const config = cli.getConfig();
      const info = await tryInfo(new DaemonClient(config.settings.socket));
      if (!info) throw new CliError(`bangerd is not running on ${config.settings.socket}; start it with banger daemon start`);
      printInfo(info, opts.json ?? false);
    });
}
