// A client of one Firecracker process's API: HTTP/1.1 over its Unix socket, JSON bodies.
import { request as httpRequest } from 'node:http';
import { BangerError, type ErrorCode } from '../core/errors.js';
import type {
  BootSource,
  Drive,
  FirecrackerVersion,
  InstanceActionInfo,
  InstanceInfo,
  MachineConfiguration,
  NetworkInterface,
} from './types.js';

const DEFAULT_TIMEOUT_MS = 5_000;
/** Largest answer body kept; Firecracker's answers are a few hundred bytes. */
const MAX_ANSWER_BYTES = 1 << 20;

/** What went wrong with one API call; also the error's details. */
export interface FirecrackerApiErrorDetails {
  method: string;
  path: string;
  /** HTTP status, null when no answer came (timeout, connection refused, socket missing). */
  status: number | null;
  faultMessage: string | null;
  timedOut: boolean;
}

/**
 * A Firecracker API call that failed. A 4xx means Firecracker refused the request as it stood
 * (failed_precondition); a 5xx, a timeout or a connection error is internal.
 * The constructor takes (message, {cause, details}) like every BangerError so wrapError keeps the type.
 */
export class FirecrackerApiError extends BangerError {
  override readonly code: ErrorCode;
  readonly status: number | null;
  readonly faultMessage: string | null;
  readonly timedOut: boolean;
  constructor(message: string, options?: { cause?: unknown; details?: unknown }) {
    super(message, options);
    const d = (options?.details ?? {}) as Partial<FirecrackerApiErrorDetails>;
    this.status = d.status ?? null;
    this.faultMessage = d.faultMessage ?? null;
    this.timedOut = d.timedOut ?? false;
    this.code = this.status !== null && this.status >= 400 && this.status < 500 ? 'failed_precondition' : 'internal';
  }
}

export interface FirecrackerClientOptions {
  /** Bound on each whole call, connect to last byte. Default 5 s. */
  timeoutMs?: number;
}

interface Answer {
  status: number;
  text: string;
}

export class FirecrackerClient {
  readonly socketPath: string;
  private readonly timeoutMs: number;

  constructor(socketPath: string, opts: FirecrackerClientOptions = {}) {
    this.socketPath = socketPath;
    this.timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  }

  getInstanceInfo(): Promise<InstanceInfo> {
    return this.callJson<InstanceInfo>('GET', '/');
  }

  getVersion(): Promise<FirecrackerVersion> {
    return this.callJson<FirecrackerVersion>('GET', '/version');
  }

  getMachineConfig(): Promise<MachineConfiguration> {
    return this.callJson<MachineConfiguration>('GET', '/machine-config');
  }

  putMachineConfig(config: MachineConfiguration): Promise<void> {
    return this.callEmpty('PUT', '/machine-config', config);
  }

  putBootSource(bootSource: BootSource): Promise<void> {
    return this.callEmpty('PUT', '/boot-source', bootSource);
  }

  putDrive(drive: Drive): Promise<void> {
    return this.callEmpty('PUT', `/drives/${encodeURIComponent(drive.drive_id)}`, drive);
  }

  putNetworkInterface(iface: NetworkInterface): Promise<void> {
    return this.callEmpty('PUT', `/network-interfaces/${encodeURIComponent(iface.iface_id)}`, iface);
  }

  instanceStart(): Promise<void> {
    return this.action({ action_type: 'InstanceStart' });
  }

  sendCtrlAltDel(): Promise<void> {
    return this.action({ action_type: 'SendCtrlAltDel' });
  }

  private action(info: InstanceActionInfo): Promise<void> {
    return this.callEmpty('PUT', '/actions', info);
  }

  private async callJson<T>(method: string, path: string): Promise<T> {
    const answer = await this.call(method, path);
    try {
      return JSON.parse(answer.text) as T;
    } catch (cause) {
      throw new FirecrackerApiError(`${method} ${path} answered ${answer.status} with a body that is not JSON: ${clip(answer.text)}`, {
        cause,
        details: { method, path, status: answer.status, faultMessage: null, timedOut: false },
      });
    }
  }

  private async callEmpty(method: string, path: string, body: unknown): Promise<void> {
    await this.call(method, path, body);
  }

  /** One request; resolves on 2xx, throws FirecrackerApiError on anything else. */
  private call(method: string, path: string, body?: unknown): Promise<Answer> {
    const payload = body === undefined ? Buffer.alloc(0) : Buffer.from(JSON.stringify(body), 'utf8');
    const details = (status: number | null, faultMessage: string | null, timedOut = false): FirecrackerApiErrorDetails => ({
      method,
      path,
      status,
      faultMessage,
      timedOut,
    });
    return new Promise<Answer>((resolve, reject) => {
      let settled = false;
      const settle = (err: FirecrackerApiError | null, answer?: Answer) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (err) reject(err);
        else resolve(answer as Answer);
      };
      // Content-Length always, so Node never falls back to chunked encoding (Firecracker's
      // micro_http reads a chunked body as no body at all: "Empty PUT request.").
      const req = httpRequest({
        socketPath: this.socketPath,
        method,
        path,
        agent: false,
        headers: {
          Accept: 'application/json',
          ...(payload.length > 0 ? { 'Content-Type': 'application/json' } : {}),
          'Content-Length': String(payload.length),
        },
      });
      const timer = setTimeout(() => {
        settle(
          new FirecrackerApiError(`${method} ${path} got no answer within ${this.timeoutMs} ms from ${this.socketPath}`, {
            details: details(null, null, true),
          }),
        );
        req.destroy();
      }, this.timeoutMs);
      req.on('error', (cause: NodeJS.ErrnoException) => {
        settle(
          new FirecrackerApiError(`${method} ${path} failed on ${this.socketPath}: ${cause.code ?? cause.message}`, {
            cause,
            details: details(null, null),
          }),
        );
      });
      req.on('response', (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (chunk: Buffer) => {
          size += chunk.length;
          if (size <= MAX_ANSWER_BYTES) chunks.push(chunk);
        });
        res.on('error', (cause) => {
          settle(new FirecrackerApiError(`${method} ${path}: answer broken off: ${cause.message}`, { cause, details: details(res.statusCode ?? null, null) }));
        });
        res.on('end', () => {
          const status = res.statusCode ?? 0;
          const text = Buffer.concat(chunks).toString('utf8');
          if (status >= 200 && status < 300) {
            settle(null, { status, text });
            return;
          }
          const fault = faultOf(text);
          settle(
            new FirecrackerApiError(`${method} ${path} answered ${status}: ${fault ?? (clip(text) || '(empty body)')}`, {
              details: details(status, fault),
            }),
          );
        });
      });
      req.end(payload);
    });
  }
}

/** The fault_message of an error body, `{"fault_message": "..."}`, or null. */
function faultOf(text: string): string | null {
  try {
    const parsed = JSON.parse(text) as { fault_message?: unknown };
    return typeof parsed?.fault_message === 'string' ? parsed.fault_message : null;
  } catch {
    return null;
  }
}

function clip(text: string): string {
  const t = text.trim();
  return t.length > 200 ? `${t.slice(0, 200)}...` : t;
}
