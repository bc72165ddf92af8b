// banger: the CLI entry point and its one error boundary.
import { Command, CommanderError } from 'commander';
import { VERSION } from '../core/build-info.js';
import { BangerError, causeChain } from '../core/errors.js';
import { CliContext } from './context.js';
import { ApiError, CliError, UsageError } from './errors.js';
import { registerDaemon } from './commands/daemon.js';
import { registerImage } from './commands/image.js';
import { registerVm, lsCommand } from './commands/vm.js';
import { registerHost } from './commands/host.js';

function buildProgram(cli: CliContext): Command {
  const program = new Command('banger')
    .description('Firecracker microVMs on one Linux host')
    .version(VERSION)
    .option('--verbose', 'print the cause chain of errors')
    .showSuggestionAfterError(true)
    .exitOverride()
    .configureOutput({ writeErr: (s) => process.stderr.write(s) });
  registerDaemon(program, cli);
  registerImage(program, cli);
  registerVm(program, cli);
  program.addCommand(lsCommand('ps', cli).description('list VMs (alias of banger vm ls)'));
  registerHost(program, cli);
  // Every subcommand reports usage errors through the same boundary.
  const override = (cmd: Command) => {
    cmd.exitOverride();
    cmd.commands.forEach(override);
  };
  override(program);
  return program;
}

function report(err: unknown, verbose: boolean): number {
  if (err instanceof CommanderError) {
    // commander already printed its message; help and version are successes
    if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.code === 'commander.help') return 0;
    return 2;
  }
  const message = err instanceof Error ? err.message : String(err);
  process.stderr.write(`banger: ${message}\n`);
  if (verbose) {
    const chain = err instanceof ApiError ? ((err.details as { causes?: string[] })?.causes ?? []) : causeChain(err).slice(1);
    for (const c of chain) process.stderr.write(`  caused by: ${c}\n`);
    if (err instanceof ApiError) process.stderr.write(`  (daemon error code ${err.code}, HTTP ${err.status})\n`);
  }
  if (err instanceof UsageError) return 2;
  if (err instanceof CliError) return err.exitCode === 2 ? 2 : err.exitCode;
  if (err instanceof BangerError && err.code === 'invalid_argument') return 2;
  return 1;
}

async function main(argv: string[]): Promise<number> {
  const cli = new CliContext();
  const program = buildProgram(cli);
  const verbose = argv.includes('--verbose');
  try {
    await program.parseAsync(argv, { from: 'user' });
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (err) {
    return report(err, verbose);
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err) => {
    process.stderr.write(`banger: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  },
);
