// banger doctor | gc | tui
import type { Command } from 'commander';
import type { CliContext } from '../context.js';
import { printJson } from '../output.js';
import { CliError } from '../errors.js';

/** One answer of host.doctor (src/daemon/doctor.ts). */
export interface DoctorCheck {
  name: string;
  status: 'ok' | 'warn' | 'fail';
  message: string;
  fix?: string;
}

/** One finding of host.gc: removed, or why not. */
export interface GcItem {
  kind: string;
  handle: string;
  detail?: string;
  removed?: boolean;
  error?: string;
}

export function registerHost(program: Command, cli: CliContext): void {
  program
    .command('doctor')
    .description('check host prerequisites, each with how to fix it')
    .option('--json', 'print the checks as JSON')
    .action(async (o: { json?: boolean }) => {
      const report = await cli.call<{ checks: DoctorCheck[]; strategy: string | null }>('host.doctor', {});
      if (o.json) printJson(report);
      else {
        const mark = { ok: 'ok  ', warn: 'warn', fail: 'FAIL' } as const;
        for (const c of report.checks) {
          process.stdout.write(`${mark[c.status]}  ${c.name}: ${c.message}\n`);
          if (c.fix && c.status !== 'ok') process.stdout.write(`      fix: ${c.fix}\n`);
        }
        const count = (s: DoctorCheck['status']) => report.checks.filter((c) => c.status === s).length;
        process.stdout.write(`\n${count('ok')} ok, ${count('warn')} warnings, ${count('fail')} failed\n`);
      }
      if (report.checks.some((c) => c.status === 'fail')) process.exitCode = 1;
    });
  program
    .command('gc')
    .description('remove host resources named by banger that no VM owns')
    .option('--dry-run', 'list them, remove nothing')
    .option('--json', 'print the findings as JSON')
    .action(async (o: { dryRun?: boolean; json?: boolean }) => {
      const res = await cli.call<{ items: GcItem[] }>('host.gc', { dryRun: o.dryRun ?? false }, { progress: true });
      const hasErrors = res.items.some((i) => i.error);
      if (o.json) {
        printJson(res);
        if (hasErrors) process.exitCode = 1;
        return;
      }
      if (res.items.length === 0) process.stdout.write('nothing to collect\n');
      for (const it of res.items) {
        const isRow = it.kind === 'journal';
        const what = o.dryRun ? (isRow ? 'would forget' : 'would remove') : it.removed ? (isRow ? 'forgot' : 'removed') : `failed (${it.error})`;
        process.stdout.write(`${what}: ${it.kind} ${it.handle}${it.detail ? ` (${it.detail})` : ''}\n`);
      }
      if (hasErrors) throw new CliError('some leftovers could not be removed; see above, and bangerd.log');
    });
  program
    .command('tui')
    .description('the terminal UI')
    .action(async () => {
      // Ink renders only at exit when CI is set (it reads the variable as it loads); a person at a
      // terminal wants the live screen whatever their environment says.
      if (process.stdout.isTTY) delete process.env.CI;
      const { runTui } = (await import(/* external */ './tui.js' as string)) as { runTui: (cli: CliContext) => Promise<void> };
      await runTui(cli);
    });
}
