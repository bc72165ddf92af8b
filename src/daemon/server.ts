// HTTP/1.1 over the daemon's Unix socket: POST /v1/<method>, GET /v1/events. The one error
// boundary of the daemon: every failure becomes the SPEC error shape.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import { BangerError, HostCommandError, causeChain, type ErrorCode } from '../core/errors.js';
import type { Daemon } from './daemon.js';
import { schemas, describeZodError, type Method } from './schemas.js';

const MAX_BODY_BYTES = 1 << 20;

const STATUS: Record<ErrorCode, number> = {
  invalid_argument: 400,
  not_found: 404,
  already_exists: 409,
  failed_precondition: 409,
  host_command_failed: 500,
  internal: 500,
};

export interface ApiErrorBody {
  error: { code: ErrorCode; message: string; details: unknown };
}

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

function sendError(res: ServerResponse, code: ErrorCode, message: string, details: unknown = null): void {
  send(res, STATUS[code], { error: { code, message, details } } satisfies ApiErrorBody);
}

/** Past this much, an oversized body is no longer drained for its answer: the connection is cut. */
const MAX_DRAINED_BYTES = 16 * MAX_BODY_BYTES;

// An oversized body is read to its end and dropped, so that the client, still writing, gets its
// 400: destroying the request at once left it with "socket hang up" and no answer.
function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    let size = 0;
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_DRAINED_BYTES) req.destroy();
      else if (size > MAX_BODY_BYTES) chunks.length = 0;
      else chunks.push(c);
    });
    req.on('end', () => {
      if (size > MAX_BODY_BYTES) reject(new Error(`the body is larger than ${MAX_BODY_BYTES} bytes`));
      else resolve(Buffer.concat(chunks).toString('utf8'));
    });
    req.on('error', reject);
  });
}

export function createApiServer(daemon: Daemon, log: Logger): Server {
  const server = createServer((req, res) => {
    handle(daemon, log, req, res).catch((err) => {
      log.error({ err }, 'request handler crashed');
      if (!res.headersSent) sendError(res, 'internal', 'internal error; see the daemon log');
      else res.destroy();
    });
  });
  server.keepAliveTimeout = 5000;
  return server;
}

async function handle(daemon: Daemon, log: Logger, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const url = new URL(req.url ?? '/', 'http://bangerd');
  if (url.pathname === '/v1/events') {
    if (req.method !== 'GET') return sendError(res, 'invalid_argument', 'use GET for /v1/events');
    return streamEvents(daemon, req, res);
  }
  const m = /^\/v1\/([a-z]+\.[a-z]+)$/.exec(url.pathname);
  // A CLI of another build gets a refusal before anything happens (even before its method and body are checked against this build's schemas); it replaces this daemon.
  const build = req.headers['x-banger-build'];
  if (typeof build === 'string' && build !== daemon.deps.buildId && m && m[1] !== 'daemon.info' && m[1] !== 'daemon.shutdown') {
    return sendError(res, 'failed_precondition', `this bangerd is build ${daemon.deps.buildId}, the client is build ${build}; the client replaces it`, {
      reason: 'stale_daemon',
      buildId: daemon.deps.buildId,
    });
  }

  if (!m || !(m[1] in schemas)) {
    return sendError(res, 'not_found', `unknown endpoint ${req.method} ${url.pathname}; methods are POST /v1/<method> with method one of ${Object.keys(schemas).join(', ')}`);
  }
  const method = m[1] as Method;
  if (req.method !== 'POST') return sendError(res, 'invalid_argument', `use POST for /v1/${method}`);
  let raw: string;
  try {
    raw = await readBody(req);
  } catch (err) {
    return sendError(res, 'invalid_argument', `reading the request body: ${(err as Error).message}`);
  }
  let body: unknown = {};
  if (raw.trim() !== '') {
    try {
      body = JSON.parse(raw);
    } catch (err) {
      return sendError(res, 'invalid_argument', `the request body is not valid JSON: ${(err as Error).message}`);
    }
  }
  const parsed = schemas[method].safeParse(body);
  if (!parsed.success) {
    return sendError(res, 'invalid_argument', `invalid ${method} request: ${describeZodError(parsed.error)}`, { issues: parsed.error.issues.map((i) => ({ path: i.path, message: i.message })) });
  }
  const opHeader = req.headers['x-banger-op'];
  const opId = typeof opHeader === 'string' && /^[A-Za-z0-9-]{1,64}$/.test(opHeader) ? opHeader : null;
  const started = Date.now();
  try {
    const handler = daemon.handlers[method] as (p: unknown, c: { opId: string | null }) => Promise<unknown>;
    const result = await handler(parsed.data, { opId });
    log.info({ method, opId, ms: Date.now() - started }, 'request');
    send(res, 200, { result });
  } catch (err) {
    const code: ErrorCode = err instanceof BangerError ? err.code : 'internal';
    log[code === 'internal' ? 'error' : 'warn']({ method, opId, err, chain: causeChain(err) }, 'request failed');
    const message = err instanceof Error ? err.message : String(err);
    const details = err instanceof HostCommandError ? err.details : err instanceof BangerError ? (err.details ?? null) : null;
    sendError(res, code, code === 'internal' && !(err instanceof BangerError) ? `internal error: ${message}` : message, { ...(details as object), causes: causeChain(err).slice(1) });
  }
}

function streamEvents(daemon: Daemon, req: IncomingMessage, res: ServerResponse): void {
  res.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-cache' });
  res.write(JSON.stringify({ type: 'hello', at: new Date().toISOString(), pid: process.pid }) + '\n');
  const unsubscribe = daemon.deps.events.subscribe((e) => {
    res.write(JSON.stringify(e) + '\n');
  });
  const ping = setInterval(() => res.write(JSON.stringify({ type: 'ping', at: new Date().toISOString() }) + '\n'), 15_000);
  const done = () => {
    clearInterval(ping);
    unsubscribe();
  };
  req.on('close', done);
  res.on('close', done);
}
