// A Firecracker stand-in that boots a real guest: `fc-qemu --api-sock PATH --id ID` serves
// Firecracker's API exactly as the plain stand-in does (../fc-standin/validation.ts) and, at
// InstanceStart, runs qemu-system-x86_64 in software emulation with the configured kernel, initrd,
// boot arguments, drives and TAPs (./qemu.ts). The guest's serial console is this process's stdout;
// SendCtrlAltDel becomes `sendkey ctrl-alt-delete` on QEMU's monitor; this process exits when QEMU
// does (a guest reboot ends QEMU, as reboot=k ends Firecracker), and QEMU dies with this process.
// Environment: FC_QEMU_BINARY (default qemu-system-x86_64), FC_QEMU_READY_TIMEOUT_MS (default 4000, under the
// 5 s that banger gives an API call).
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants, existsSync, writeSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { connect, type Socket } from 'node:net';
import { delimiter, join } from 'node:path';
import { FIRECRACKER_API_VERSION } from '../../src/firecracker/types.js';
import { checkHost as checkHostFiles, fault, handleApiRequest, newVmmState, parseApiRequest, parseStandinArgs, sendAnswer, type ApiAnswer, type VmmState } from '../fc-standin/validation.js';
import { QEMU_BINARY, qemuArgv } from './qemu.js';

const env = process.env;
const qemuBinary = env.FC_QEMU_BINARY || QEMU_BINARY;
const readyTimeoutMs = Number(env.FC_QEMU_READY_TIMEOUT_MS || 4_000);

/** Console output: synchronous, so it is in the file before any exit. */
function consoleLine(text: string): void {
  writeSync(1, `${text}\n`);
}

function onPath(name: string): string | null {
  for (const dir of (env.PATH ?? '').split(delimiter)) {
    if (!dir) continue;
    const p = join(dir, name);
    try {
      accessSync(p, constants.X_OK);
      return p;
    } catch {
      // not here
    }
  }
  return null;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** QEMU's human monitor over its abstract unix socket: waits for the "(qemu) " prompt, sends lines. */
class Monitor {
  private output = '';
  private constructor(private readonly socket: Socket) {
    socket.setEncoding('utf8');
    socket.on('data', (d: string) => (this.output = (this.output + d).slice(-4096)));
    socket.on('error', () => {});
  }

  /** Connects and waits for the prompt, which QEMU prints only once its main loop runs (devices made, TAPs open). */
  static async open(name: string, timeoutMs: number): Promise<Monitor> {
    const socket = await new Promise<Socket>((resolve, reject) => {
      const s = connect({ path: `\0${name}` });
      s.once('connect', () => resolve(s));
      s.once('error', reject);
    });
    const m = new Monitor(socket);
    const deadline = Date.now() + timeoutMs;
    while (!m.output.includes('(qemu) ')) {
      if (socket.destroyed || Date.now() > deadline) {
        socket.destroy();
        throw new Error('the monitor did not prompt');
      }
      await sleep(20);
    }
    return m;
  }

  get isOpen(): boolean {
    return !this.socket.destroyed;
  }

  send(line: string): void {
    this.socket.write(`${line}\n`);
  }

  close(): void {
    this.socket.destroy();
  }
}

const { apiSock, id } = parseStandinArgs('fc-qemu', process.argv.slice(2));
const state: VmmState = newVmmState(id);
const monitorName = `fc-qemu/${id}/${process.pid}`;
let qemu: ChildProcess | null = null;
let monitor: Monitor | null = null;

consoleLine(`Running Firecracker v${FIRECRACKER_API_VERSION} (fc-qemu, pid ${process.pid})`);

// QEMU never outlives this process: SIGKILL it on any exit (a SIGKILL of this process is covered by setpriv's pdeathsig).
process.on('exit', () => {
  if (qemu && qemu.exitCode === null && qemu.signalCode === null) qemu.kill('SIGKILL');
});
for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) {
  process.on(sig, () => {
    consoleLine(`fc-qemu: ${sig}, killing qemu`);
    process.exit(1);
  });
}

/** The shared host checks, and one of QEMU's own: it boots only drives backed by a file. */
function checkHost(s: VmmState): ApiAnswer | null {
  const answer = checkHostFiles(s);
  if (answer) return answer;
  const vhost = s.drives.find((d) => d.path_on_host === undefined);
  return vhost ? fault(400, `Start microvm error: fc-qemu boots only path_on_host drives; ${vhost.drive_id} is vhost-user`) : null;
}

/**
 * Runs QEMU and resolves once its monitor prompts (the guest is running), or with the reason it
 * did not. From then on, QEMU's exit is this process's exit.
 */
async function bootQemu(s: VmmState): Promise<string | null> {
  const argv = [qemuBinary, ...qemuArgv(s, { monitorName })];
  // setpriv's parent-death signal: a SIGKILLed stand-in (banger's stop timeout) takes QEMU with it.
  const setpriv = onPath('setpriv');
  const full = setpriv ? [setpriv, '--pdeathsig', 'KILL', '--', ...argv] : argv;
  consoleLine(`fc-qemu: ${argv.join(' ')}`);
  let stderrTail = '';
  let exit: { code: number | null; signal: string | null; error?: string } | null = null;
  const child = spawn(full[0], full.slice(1), { stdio: ['ignore', 'inherit', 'pipe'] });
  qemu = child;
  child.stderr!.on('data', (d: Buffer) => {
    writeSync(2, d);
    stderrTail = (stderrTail + d.toString('utf8')).slice(-1000);
  });
  const exited = new Promise<void>((resolve) => {
    child.once('error', (err) => {
      exit = { code: null, signal: null, error: err.message };
      resolve();
    });
    child.once('exit', (code, signal) => {
      exit = { code, signal };
      resolve();
    });
  });
  const how = () => {
    const e = exit!;
    if (e.error) return `cannot run ${qemuBinary}: ${e.error}`;
    return `${qemuBinary} ${e.signal ? `was killed by ${e.signal}` : `exited with code ${e.code}`}${stderrTail.trim() ? `: ${stderrTail.trim()}` : ''}`;
  };

  const deadline = Date.now() + readyTimeoutMs;
  for (;;) {
    if (exit) return how();
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      return `${qemuBinary} did not get ready within ${readyTimeoutMs} ms`;
    }
    try {
      monitor = await Monitor.open(monitorName, Math.max(1, deadline - Date.now()));
      break;
    } catch {
      // The socket is not there yet, or QEMU died: look again.
      await Promise.race([exited, sleep(50)]);
    }
  }

  void exited.then(() => {
    monitor?.close();
    const e = exit!;
    consoleLine(`fc-qemu: ${how()}`);
    process.exit(e.code === 0 ? 0 : 1);
  });
  return null;
}

let bootRequested = false;
const hooks = {
  start: (s: VmmState) => {
    const refused = checkHost(s);
    if (refused) return refused;
    bootRequested = true;
    return null;
  },
  ctrlAltDel: () => {
    if (!monitor?.isOpen) {
      consoleLine('fc-qemu: SendCtrlAltDel: the QEMU monitor is gone');
      return;
    }
    // Logged first: the guest may answer on the console before this process runs its next line.
    consoleLine('fc-qemu: SendCtrlAltDel: sendkey ctrl-alt-delete to the QEMU monitor');
    monitor.send('sendkey ctrl-alt-delete');
  },
};


async function answer(method: string, path: string, body: Buffer | null): Promise<ApiAnswer> {
  const parsed = parseApiRequest(method, path, body);
  if ('status' in parsed) return parsed;
  const answered = handleApiRequest(state, parsed, hooks);
  if (!bootRequested) return answered;
  // Firecracker answers InstanceStart once the guest runs: so does this, once QEMU's monitor prompts.
  bootRequested = false;
  const failure = await bootQemu(state);
  if (failure === null) return answered;
  state.started = false;
  return fault(400, `Start microvm error: fc-qemu: ${failure}`);
}

function serve(req: IncomingMessage, res: ServerResponse): void {
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    // micro_http takes the body from Content-Length only: a chunked body is no body at all.
    const declared = Number(req.headers['content-length'] ?? '0');
    const body = declared > 0 ? Buffer.concat(chunks) : null;
    void answer(req.method ?? 'GET', req.url ?? '/', body).then((a) => sendAnswer(res, a));
  });
}

if (existsSync(apiSock)) {
  process.stderr.write(`fc-qemu: Failed to open the API socket at: ${apiSock}. Check that it is not already used.\n`);
  process.exit(1);
}
const server = createServer(serve);
server.on('error', (err) => {
  process.stderr.write(`fc-qemu: API server: ${err.message}\n`);
  process.exit(1);
});
server.listen(apiSock);
