// TuiClient over the real daemon: calls over the socket carrying this build's id, the event
// stream (each (re)connect first starts a daemon when none answers and replaces one of another
// build, as every CLI command does), the console files, and ssh through the terminal hand-over.
import { request } from 'node:http';
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { spawn } from 'node:child_process';
import type { Image, VmView } from '../core/models.js';
import { vmDir } from '../core/paths.js';
import { sshArgv } from '../host/ssh.js';
import { followFile, tailLines } from '../firecracker/console.js';
import type { LoadedConfig } from '../core/config.js';
import { DaemonClient, cliBuildId, connectDaemon, isNoDaemon } from '../cli/client.js';
import type { CreateRequest, SubscribeHandlers, Subscription, TuiClient, TuiEvent } from './client.js';
import type { Terminal } from './screen.js';

/** How much of a long console the logs screen starts with. */
const FOLLOW_BACKLOG_BYTES = 64 * 1024;

/**
 * Opens GET /v1/events on socket and feeds NDJSON lines to handlers. Unlike DaemonClient.events,
 * it reports the end of the stream, which is how the TUI notices a daemon restart.
 */
export function openEventStream(socket: string, handlers: SubscribeHandlers): Promise<Subscription> {
  return new Promise((resolve, reject) => {
    let isClosed = false;
    let isOpen = false;
    const end = (err?: Error) => {
      if (isClosed) return;
      isClosed = true;
      if (isOpen) handlers.onClose(err);
      else reject(err ?? new Error('the daemon closed the event stream'));
    };
    const req = request({ socketPath: socket, path: '/v1/events', method: 'GET' }, (res) => {
      if (res.statusCode !== 200) {
        res.resume();
        end(new Error(`the daemon answered ${res.statusCode} to GET /v1/events`));
        return;
      }
      isOpen = true;
      let buffer = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        buffer += chunk;
        let nl: number;
        while ((nl = buffer.indexOf('\n')) >= 0) {
          const line = buffer.slice(0, nl).trim();
          buffer = buffer.slice(nl + 1);
          if (!line || isClosed) continue;
          let event: TuiEvent;
          try {
            event = JSON.parse(line) as TuiEvent;
          } catch {
            continue;
          }
          handlers.onEvent(event);
        }
      });
      res.on('end', () => end());
      res.on('close', () => end());
      res.on('error', (err) => end(err));
      resolve({
        close: () => {
          isClosed = true;
          req.destroy();
        },
      });
    });
    req.on('error', (err) => end(err));
    req.end();
  });
}

/** Runs argv with the terminal's stdio; resolves its exit code (128+n for a signal). */
function runAttached(argv: string[]): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0], argv.slice(1), { stdio: 'inherit' });
    child.on('error', (err) => reject(new Error(`cannot run ${argv[0]}: ${err.message}; install the OpenSSH client`)));
    child.on('exit', (code, signal) => resolve(code ?? (signal ? 128 + 9 : 1)));
  });
}

export class DaemonTuiClient implements TuiClient {
  private readonly daemon: DaemonClient;

  constructor(
    private readonly config: LoadedConfig,
    private readonly terminal: Terminal | null,
  ) {
    this.daemon = new DaemonClient(config.settings.socket, 0, cliBuildId(config));
  }

  list(): Promise<VmView[]> {
    return this.call('vm.list', {});
  }

  get(vm: string): Promise<VmView> {
    return this.call('vm.get', { vm });
  }

  images(): Promise<Image[]> {
    return this.call('image.list', {});
  }

  /** One call; a missing daemon is the reconnect loop's business (subscribe starts one). */
  private async call<T>(method: string, body: unknown, opId?: string): Promise<T> {
    try {
      return await this.daemon.call<T>(method, body, opId ? { opId } : {});
    } catch (err) {
      if (isNoDaemon(err)) throw new Error('bangerd is not answering; the TUI is reconnecting, try again in a moment');
      throw err;
    }
  }

  create(req: CreateRequest, opId: string): Promise<VmView> {
    return this.call('vm.create', req, opId);
  }

  start(vm: string, opId: string): Promise<VmView> {
    return this.call('vm.start', { vm }, opId);
  }

  stop(vm: string, opId: string, opts: { force?: boolean } = {}): Promise<VmView> {
    return this.call('vm.stop', { vm, force: opts.force ?? false }, opId);
  }

  restart(vm: string, opId: string): Promise<VmView> {
    return this.call('vm.restart', { vm }, opId);
  }

  delete(vm: string, opId: string, opts: { force?: boolean } = {}): Promise<unknown> {
    return this.call('vm.delete', { vm, force: opts.force ?? false }, opId);
  }

  async subscribe(handlers: SubscribeHandlers): Promise<Subscription> {
    await connectDaemon(this.config, { autostart: true, onNotice: handlers.onNotice });
    return openEventStream(this.config.settings.socket, handlers);
  }

  private consolePath(vmId: string): string {
    return join(vmDir(this.config.paths, vmId), 'console.log');
  }

  async consoleTail(vmId: string, lines: number): Promise<string[]> {
    return tailLines(this.consolePath(vmId), lines);
  }

  async followConsole(vmId: string, onData: (chunk: string) => void, signal: AbortSignal): Promise<void> {
    const path = this.consolePath(vmId);
    let start = 0;
    try {
      start = Math.max(0, statSync(path).size - FOLLOW_BACKLOG_BYTES);
    } catch {
      // not there yet: follow from its beginning once it appears
    }
    // Started mid-file, the first piece up to a newline is the tail of a cut line: skip it.
    let isCut = start > 0;
    await followFile(
      path,
      (chunk) => {
        if (isCut) {
          const nl = chunk.indexOf('\n');
          if (nl < 0) return;
          isCut = false;
          chunk = chunk.slice(nl + 1);
        }
        if (chunk) onData(chunk);
      },
      signal,
      { start },
    );
  }

  async ssh(vm: VmView): Promise<number> {
    if (!this.terminal) throw new Error('no terminal to hand to ssh');
    const keyPath = this.config.paths.sshKey;
    if (!existsSync(keyPath)) throw new Error(`no SSH key at ${keyPath}; add an image first (banger image add) so that banger makes one`);
    const argv = sshArgv({ keyPath, guestIp: vm.guestIp, command: [], tty: true });
    return this.terminal.handOver(() => runAttached(argv));
  }
}
