// A stateful fake host. Command handlers (per tool name) are registered by fake modules
// (fake-disk.ts, fake-net.ts, ...); unknown commands throw. Failures can be injected by
// command and call number. Every call is logged for argv assertions.
import { HostCommandError } from '../../src/core/errors.js';
import type { RunOptions, RunResult, Runner, SpawnOptions, SpawnedProcess } from '../../src/core/ports.js';

export type Handler = (argv: string[], options: RunOptions) => RunResult | Promise<RunResult>;

export interface InjectedFault {
  /** Matches when argv joined by spaces starts with this prefix, e.g. "dmsetup create". */
  prefix: string;
  /** 1-based: fail the Nth matching call (default 1). */
  nth?: number;
  exitCode?: number;
  stderr?: string;
}

export const ok = (stdout = ''): RunResult => ({ exitCode: 0, stdout, stderr: '' });
export const fail = (exitCode: number, stderr: string): RunResult => ({ exitCode, stdout: '', stderr });

export class FakeRunner implements Runner {
  readonly calls: string[][] = [];
  private handlers = new Map<string, Handler>();
  private faults: (InjectedFault & { seen: number })[] = [];
  spawnHandler?: (argv: string[], options: SpawnOptions) => SpawnedProcess;

  /** Registers the handler for a tool (argv[0], after any "sudo -n" prefix is stripped). */
  handle(tool: string, handler: Handler): this {
    this.handlers.set(tool, handler);
    return this;
  }

  inject(fault: InjectedFault): this {
    this.faults.push({ ...fault, seen: 0 });
    return this;
  }

  clearFaults(): void {
    this.faults = [];
  }

  /** Calls whose joined argv starts with prefix. */
  callsMatching(prefix: string): string[][] {
    return this.calls.filter((c) => c.join(' ').startsWith(prefix));
  }

  async run(argv: string[], options: RunOptions = {}): Promise<RunResult> {
    this.calls.push([...argv]);
    const check = options.check ?? true;
    let effective = argv;
    if (argv[0] === 'sudo' && argv[1] === '-n') effective = argv.slice(2);
    const joined = effective.join(' ');
    for (const f of this.faults) {
      if (joined.startsWith(f.prefix)) {
        f.seen += 1;
        if (f.seen === (f.nth ?? 1)) {
          const res = fail(f.exitCode ?? 1, f.stderr ?? `injected fault in ${f.prefix}`);
          if (check) throw new HostCommandError({ argv, exitCode: res.exitCode, stderr: res.stderr });
          return res;
        }
      }
    }
    const handler = this.handlers.get(effective[0]);
    if (!handler) throw new Error(`FakeRunner: unexpected command: ${joined}`);
    const res = await handler(effective, options);
    if (res.exitCode !== 0 && check) {
      throw new HostCommandError({ argv, exitCode: res.exitCode, stdout: res.stdout, stderr: res.stderr });
    }
    return res;
  }

  spawn(argv: string[], options: SpawnOptions = {}): SpawnedProcess {
    this.calls.push([...argv]);
    if (!this.spawnHandler) throw new Error(`FakeRunner: unexpected spawn: ${argv.join(' ')}`);
    return this.spawnHandler(argv, options);
  }
}
