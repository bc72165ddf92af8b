// Fuzzing of the daemon API: over 10,000 random and mutated request bodies, across every method,
// sent over the real socket to a real daemon process (in a throwaway network namespace, with an
// image, a stopped and a running VM). Every invalid body must get a 4xx in the SPEC error shape;
// valid bodies are sent only to methods that change nothing; the daemon must not crash, log no
// error, and its state (the API's lists, the database's rows, the namespace's links and rules)
// must be the same at the end. A seeded PRNG makes failures reproducible: FUZZ_SEED=<n>.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { Agent } from 'node:http';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { BangerEnv, makeImageFiles, isAlive } from '../helpers/banger-env.js';
import { HostNetns, privilegedSkipReason } from '../helpers/netns.js';
import { callApi, errorShapeProblems, standinBinary, type ApiAnswer } from '../helpers/fault-host.js';
import { METHODS, schemas, type Method } from '../../src/daemon/schemas.js';

const skip = privilegedSkipReason();
if (skip) console.warn(`skipping the API fuzzer: ${skip}`);

const CASES = Number(process.env.FUZZ_CASES ?? 10_500);
const SEED = Number(process.env.FUZZ_SEED ?? Math.floor(Math.random() * 2 ** 32));
const MAX_BODY_BYTES = 1 << 20;
/** Methods a valid body may reach: they change nothing (host.doctor is left out: it probes the host). */
const READ_ONLY = new Set<Method>(['vm.list', 'vm.get', 'image.list', 'image.get', 'daemon.info']);

/** mulberry32: a small seeded PRNG, so that a failing run can be replayed from its seed. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A valid body per method, the starting point of mutations. */
const TEMPLATES: Record<Method, Record<string, unknown>> = {
  'vm.create': { name: 'fz-new', image: 'base', vcpus: 1, memoryMib: 256, diskSizeBytes: 64 * 1024 * 1024, nat: true, start: false, waitSsh: false },
  'vm.start': { vm: 'idle' },
  'vm.restart': { vm: 'busy', timeoutSeconds: 5 },
  'vm.stop': { vm: 'busy', timeoutSeconds: 5, force: false },
  'vm.delete': { vm: 'idle', force: true },
  'vm.list': {},
  'vm.get': { vm: 'busy' },
  'image.add': { name: 'fz', kernel: '/tmp/vmlinux', rootfs: '/tmp/rootfs.ext4', initrd: '/tmp/initrd', bootArgs: 'quiet' },
  'image.build': { name: 'fz', kernel: '/tmp/vmlinux', suite: 'bookworm', sizeBytes: 512 * 1024 * 1024, packages: ['curl'], debianKernel: false },
  'image.list': {},
  'image.get': { image: 'base' },
  'image.delete': { image: 'base' },
  'daemon.info': {},
  'daemon.shutdown': {},
  'host.doctor': {},
  'host.gc': { dryRun: false },
};

class Fuzzer {
  constructor(private readonly rand: () => number) {}

  int(n: number): number {
    return Math.floor(this.rand() * n);
  }
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)];
  }
  chance(p: number): boolean {
    return this.rand() < p;
  }

  string(): string {
    const kind = this.int(10);
    if (kind === 0) return '';
    if (kind === 1) return 'x'.repeat(this.pick([129, 4097, 70_000, 300_000]));
    if (kind === 2) return this.pick(['😀🚀', 'ﷺ\u202eevil', '\u0000nul', '\ud800', 'e\u0301', '日本語', '\t\n\r', '"quoted"', '\\']);
    if (kind === 3) return this.pick(['../../etc/passwd', '/dev/null', '/', 'relative/path', '/tmp/' + 'a'.repeat(5000)]);
    if (kind === 4) return this.pick(['base', 'idle', 'busy', 'BASE', 'Base ', ' idle', 'a', '0', 'ffffffffffff', '-dash', 'x'.repeat(64)]);
    if (kind === 5) return this.pick(['__proto__', 'constructor', 'toString', 'hasOwnProperty', 'null', 'true', '1e309']);
    const n = 1 + this.int(40);
    let s = '';
    for (let i = 0; i < n; i++) s += String.fromCodePoint(this.pick([0x20 + this.int(95), this.int(0x20), 0x80 + this.int(0x780), 0x4e00 + this.int(500), 0x1f600 + this.int(80)]));
    return s;
  }

  number(): number {
    return this.pick([0, -0, -1, 1, 1.5, -1.5, 31, 32, 33, 63, 64, 65, 2 ** 31, 2 ** 32, 2 ** 53, 2 ** 53 + 2, -(2 ** 53), 1e308, -1e308, 5e-324, 3600, 3600.5, 3601, 2 ** 44, 2 ** 44 + 1, 256 * 1024, 256 * 1024 + 1, 268435456, this.int(1e6) - 5e5]);
  }

  value(depth = 0): unknown {
    const kind = this.int(depth > 3 ? 5 : 8);
    if (kind === 0) return null;
    if (kind === 1) return this.chance(0.5);
    if (kind === 2) return this.number();
    if (kind === 3 || kind === 4) return this.string();
    if (kind === 5) return Array.from({ length: this.int(5) }, () => this.value(depth + 1));
    if (kind === 6) return Object.fromEntries(Array.from({ length: this.int(4) }, () => [this.string().slice(0, 20), this.value(depth + 1)]));
    return this.nested(1 + this.int(200));
  }

  nested(depth: number): unknown {
    let v: unknown = this.chance(0.5) ? 'core' : {};
    for (let i = 0; i < depth; i++) v = this.chance(0.5) ? [v] : { k: v };
    return v;
  }

  /** A body: a mutated template as JSON, or raw bytes that are not (valid) JSON. */
  body(method: Method): string | Buffer {
    const r = this.int(100);
    if (r < 70) return JSON.stringify(this.mutate(structuredClone(TEMPLATES[method])));
    if (r < 78) return JSON.stringify(this.value());
    if (r < 80) return this.pick(['', ' ', '\n', '{}', '[]', 'null', '0', '""', 'true']);
    if (r < 90) return this.rawJunk(method);
    if (r < 92) return JSON.stringify({ ...TEMPLATES[method], pad: 'p'.repeat(MAX_BODY_BYTES + this.int(1000)) });
    return Buffer.from(Array.from({ length: 1 + this.int(300) }, () => this.int(256)));
  }

  mutate(body: Record<string, unknown>): unknown {
    const rounds = 1 + this.int(3);
    for (let i = 0; i < rounds; i++) {
      const keys = Object.keys(body);
      const op = this.int(6);
      if (op === 0 && keys.length) delete body[this.pick(keys)];
      else if (op === 1) body[this.pick(['extra', 'Name', 'vm ', 'id', '__proto__', 'constructor', 'image.', this.string().slice(0, 30)])] = this.value();
      else if (op === 2 && keys.length) body[this.pick(keys)] = this.value();
      else if (op === 3 && keys.length) body[this.pick(keys)] = this.number();
      else if (op === 4 && keys.length) body[this.pick(keys)] = this.string();
      else if (op === 5) return this.pick([[body], [], Object.values(body), this.string(), this.number()]);
    }
    return body;
  }

  rawJunk(method: Method): string {
    const json = JSON.stringify(TEMPLATES[method]);
    return this.pick([
      json.slice(0, Math.max(1, this.int(json.length))),
      `${json}${this.pick(['}', ',', 'x', ' {}', '\u0000'])}`,
      `\ufeff${json}`,
      json.replace(/"/g, "'"),
      `{"vm": "idle", "vm": 5}`,
      `{"__proto__": {"vm": "idle"}}`,
      `{"constructor": {"prototype": {"admin": true}}}`,
      `/* comment */ ${json}`,
      'NaN',
      'Infinity',
      'undefined',
      '{"vm": NaN}',
      `{"diskSizeBytes": 1e999, "image": "base"}`,
      '[' .repeat(5000) + ']'.repeat(5000),
      '{"a":'.repeat(3000) + '1' + '}'.repeat(3000),
      `{"name": "\\ud800", "image": "base"}`,
      '\x00\x01\x02',
    ]);
  }
}

/** Every byte of the UTF-8 form as %XX (encodeURIComponent refuses lone surrogates). */
function percentEncode(s: string): string {
  return [...Buffer.from(s)].map((b) => `%${b.toString(16).padStart(2, '0')}`).join('');
}

/** The server's own reading of a body: empty is {}, then JSON, then the method's schema. */
function isValidBody(method: Method, raw: string | Buffer): boolean {
  const text = Buffer.isBuffer(raw) ? raw.toString('utf8') : raw;
  if (Buffer.byteLength(text) > MAX_BODY_BYTES) return false;
  let body: unknown = {};
  if (text.trim() !== '') {
    try {
      body = JSON.parse(text);
    } catch {
      return false;
    }
  }
  return schemas[method].safeParse(body).success;
}

describe.skipIf(skip !== null)('API fuzzing against a real daemon', () => {
  let ns: HostNetns;
  let env: BangerEnv;

  const cli = (args: string[]) => env.cli(args, { prefix: ns.prefix });
  const json = <T = any>(args: string[]): T => env.json<T>(args, { prefix: ns.prefix });

  /** Everything an invalid request must not change. */
  async function snapshot() {
    const list = (m: string) => callApi(env.socket, m, {}).then((a) => JSON.stringify(a.body));
    const db = new Database(env.database, { readonly: true, fileMustExist: true });
    const h = createHash('sha256');
    try {
      for (const table of ['images', 'vms', 'vm_status', 'resources']) h.update(JSON.stringify(db.prepare(`SELECT * FROM ${table} ORDER BY 1, 2, 3`).all()));
    } finally {
      db.close();
    }
    return { vms: await list('vm.list'), images: await list('image.list'), db: h.digest('hex'), links: ns.links().join(','), rules: ns.rules().join('\n') };
  }

  beforeAll(async () => {
    ns = new HostNetns();
    env = new BangerEnv({ BANGER_BUILD_ID: 'api-fuzz', BANGER_FIRECRACKER: await standinBinary() });
    const files = makeImageFiles(join(env.dir, 'src'), 8);
    expect(cli(['image', 'add', 'base', '--kernel', files.kernel, '--rootfs', files.rootfs, '--initrd', files.initrd]).code).toBe(0);
    expect(json(['vm', 'create', '--name', 'idle', '--image', 'base', '--no-start']).state).toBe('stopped');
    expect(json(['vm', 'create', '--name', 'busy', '--image', 'base']).state).toBe('running');
  });

  afterAll(async () => {
    await env?.cleanup();
    ns?.destroy();
  });

  it(`answers ${CASES} random and mutated bodies with a 4xx in the error shape, never crashes, and changes nothing`, async () => {
    console.log(`fuzz seed: ${SEED} (replay with FUZZ_SEED=${SEED})`);
    const f = new Fuzzer(prng(SEED));
    const before = await snapshot();
    const pid = env.daemonPid()!;
    const logLines = readFileSync(env.log, 'utf8').split('\n').length;
    const agent = new Agent({ keepAlive: true, maxSockets: 8 });
    const failures: string[] = [];
    const stats = { sent: 0, invalid: 0, validReadOnly: 0, ok: 0, redrawnValid: 0, paths: 0 };

    const check = (label: string, sent: string | Buffer, a: ApiAnswer | Error, expectValid: boolean) => {
      const what = `${label} ${JSON.stringify(Buffer.isBuffer(sent) ? sent.toString('latin1') : sent).slice(0, 160)}`;
      if (a instanceof Error) return failures.push(`${what}: no answer: ${a.message}`);
      if (expectValid && a.status === 200 && a.body && 'result' in a.body) return stats.ok++;
      if (a.status < 400 || a.status >= 500) return failures.push(`${what}: status ${a.status}: ${a.raw.slice(0, 200)}`);
      for (const p of errorShapeProblems(a)) failures.push(`${what}: ${p}`);
      if (!expectValid && a.body?.error?.code !== 'invalid_argument' && a.status !== 404) failures.push(`${what}: code ${a.body?.error?.code}, not invalid_argument`);
    };

    const jobs: (() => Promise<void>)[] = [];
    for (let i = 0; i < CASES; i++) {
      // One request in 25 goes to a wrong endpoint or with a wrong HTTP method.
      if (f.int(25) === 0) {
        const path = f.pick([`/v1/${percentEncode(f.string().slice(0, 30))}`, '/v1/vm.list/', '/v1/VM.LIST', '/v1/', '/', '/v2/vm.list', '/v1/vm.list?x=1', '/v1/constructor.prototype', '/v1/__proto__.x']);
        const httpMethod = f.pick(['POST', 'GET', 'PUT', 'DELETE', 'PATCH']);
        stats.paths++;
        jobs.push(async () => {
          const a = await callApi(env.socket, 'x', '{}', { raw: true, path, httpMethod, agent }).catch((e: Error) => e);
          const label = `#${i} ${httpMethod} ${path}`;
          if (a instanceof Error) failures.push(`${label}: no answer: ${a.message}`);
          else if (path === '/v1/vm.list?x=1' && httpMethod === 'POST') check(label, '{}', a, true);
          else if (a.status < 400 || a.status >= 500) failures.push(`${label}: status ${a.status}`);
          else failures.push(...errorShapeProblems(a).map((p) => `${label}: ${p}`));
        });
        continue;
      }
      const method = f.pick(METHODS);
      let body = f.body(method);
      let valid = isValidBody(method, body);
      // A valid body reaches only a method that changes nothing, and rarely; otherwise it is drawn again.
      for (let tries = 0; valid && (!READ_ONLY.has(method) || f.chance(0.7)) && tries < 20; tries++) {
        stats.redrawnValid++;
        body = f.body(method);
        valid = isValidBody(method, body);
      }
      if (valid && !READ_ONLY.has(method)) continue;
      if (valid) stats.validReadOnly++;
      else stats.invalid++;
      stats.sent++;
      const sent = body;
      const isValid = valid;
      jobs.push(async () => {
        const a = await callApi(env.socket, method, sent, { raw: true, agent }).catch((e: Error) => e);
        check(`#${i} ${method}`, sent, a, isValid);
      });
    }
    let next = 0;
    await Promise.all(
      Array.from({ length: 8 }, async () => {
        while (next < jobs.length) await jobs[next++]();
      }),
    );
    agent.destroy();

    console.log(`fuzz: ${JSON.stringify(stats)}, failures ${failures.length}`);
    expect(failures.slice(0, 30), `seed ${SEED}`).toEqual([]);
    expect(stats.sent + stats.paths).toBeGreaterThanOrEqual(10_000);
    expect(stats.validReadOnly / stats.sent).toBeLessThan(0.05);

    // Alive, the same process, no error logged, nothing changed.
    expect(isAlive(pid)).toBe(true);
    expect(env.daemonPid()).toBe(pid);
    const info = await callApi(env.socket, 'daemon.info', {});
    expect(info.body.result.pid).toBe(pid);
    const newLines = readFileSync(env.log, 'utf8').split('\n').slice(logLines - 1);
    expect(newLines.filter((l) => /"level":(50|60)/.test(l)).slice(0, 3)).toEqual([]);
    expect(await snapshot()).toEqual(before);
  }, 180_000);
});
