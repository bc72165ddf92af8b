// The control plane end to end: the built CLI against a real bangerd on a temporary socket.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { request } from 'node:http';
import { spawnSync } from 'node:child_process';
import { statSync, readdirSync, writeFileSync, mkdirSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { BangerEnv, BANGERD, makeImageFiles, isAlive } from '../helpers/banger-env.js';

function rawRequest(socket: string, method: string, path: string, body?: string, headers: Record<string, string> = {}): Promise<{ status: number; json: any }> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath: socket, method, path, headers: { ...headers, ...(body !== undefined ? { 'content-length': Buffer.byteLength(body) } : {}) } }, (res) => {
      let text = '';
      res.on('data', (d) => (text += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, json: JSON.parse(text) }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

function treeListing(dir: string): string[] {
  if (!existsSync(dir)) return [];
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      out.push(p);
      if (e.isDirectory()) walk(p);
    }
  };
  walk(dir);
  return out.sort();
}

describe('control plane through the CLI and a real daemon', () => {
  let env: BangerEnv;
  let files: ReturnType<typeof makeImageFiles>;

  beforeAll(() => {
    env = new BangerEnv();
    files = makeImageFiles(join(env.dir, 'src'));
  });
  afterAll(async () => {
    await env.cleanup();
  });

  it('auto-starts the daemon on first use, with a private socket and directory', () => {
    expect(existsSync(env.socket)).toBe(false);
    const r = env.cli(['vm', 'ls', '--json']);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual([]);
    expect(statSync(env.socket).mode & 0o777).toBe(0o600);
    expect(statSync(join(env.env.XDG_RUNTIME_DIR, 'banger')).mode & 0o777).toBe(0o700);
    expect(isAlive(env.daemonPid()!)).toBe(true);
    const info = env.json<any>(['daemon', 'status']);
    expect(info.pid).toBe(env.daemonPid());
    expect(typeof info.buildId).toBe('string');
    expect(typeof info.version).toBe('string');
    expect(Date.parse(info.startedAt)).not.toBeNaN();
  });

  it('adds an image, copying the files into the data directory', () => {
    const img = env.json<any>(['image', 'add', 'base', '--kernel', files.kernel, '--rootfs', files.rootfs, '--initrd', files.initrd, '--boot-args', 'quiet  loglevel=3']);
    expect(Object.keys(img).sort()).toEqual(['bootArgs', 'createdAt', 'id', 'initrdPath', 'kernelPath', 'name', 'rootfsPath', 'rootfsSizeBytes'].sort());
    expect(img.name).toBe('base');
    expect(img.bootArgs).toBe('quiet loglevel=3');
    expect(img.rootfsSizeBytes).toBe(16 * 1024 * 1024);
    expect(img.kernelPath.startsWith(join(env.dataDir, 'images', img.id))).toBe(true);
    expect(existsSync(img.kernelPath) && existsSync(img.rootfsPath) && existsSync(img.initrdPath)).toBe(true);
    const listed = env.json<any[]>(['image', 'ls']);
    expect(listed.map((i) => i.name)).toEqual(['base']);
    expect(env.json<any>(['image', 'show', img.id.slice(0, 4)]).id).toBe(img.id);
  });

  it('rejects bad image inputs with a clear error and changes nothing', () => {
    const before = treeListing(env.dataDir);
    const notElf = join(env.dir, 'not-elf');
    writeFileSync(notElf, 'hello, I am not a kernel\n');
    const notExt4 = join(env.dir, 'not-ext4');
    writeFileSync(notExt4, Buffer.alloc(8192, 1));
    const cases: [string[], number, RegExp][] = [
      [['image', 'add', 'Bad_Name', '--kernel', files.kernel, '--rootfs', files.rootfs], 2, /image name "Bad_Name" is not valid/],
      [['image', 'add', 'base', '--kernel', files.kernel, '--rootfs', files.rootfs], 1, /image "base" already exists/],
      [['image', 'add', 'x1', '--kernel', join(env.dir, 'missing'), '--rootfs', files.rootfs], 1, /missing/],
      [['image', 'add', 'x2', '--kernel', notElf, '--rootfs', files.rootfs], 1, /not an ELF/],
      [['image', 'add', 'x3', '--kernel', files.kernel, '--rootfs', notExt4], 1, /ext4/],
      [['image', 'add', 'x4', '--kernel', files.kernel], 2, /--rootfs/],
    ];
    for (const [args, code, pattern] of cases) {
      const r = env.cli(args);
      expect(r.code, args.join(' ')).toBe(code);
      expect(r.stderr, args.join(' ')).toMatch(pattern);
      if (code === 1) expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stderr.startsWith('banger: ') || code === 2).toBe(true);
      expect(r.stdout).toBe('');
    }
    expect(env.json<any[]>(['image', 'ls']).map((i) => i.name)).toEqual(['base']);
    expect(treeListing(env.dataDir)).toEqual(before);
  });

  it('creates, lists, shows and deletes a stopped VM', () => {
    const vm = env.json<any>(['vm', 'create', '--name', 'dev', '--image', 'base', '--no-start', '--vcpus', '2', '--memory', '256']);
    for (const k of ['id', 'name', 'state', 'image', 'vcpus', 'memoryMib', 'diskSizeBytes', 'guestIp', 'hostIp', 'tap', 'mac', 'nat', 'pid', 'createdAt', 'lastError']) {
      expect(vm, k).toHaveProperty(k);
    }
    expect(vm).toMatchObject({ name: 'dev', state: 'stopped', image: 'base', vcpus: 2, memoryMib: 256, diskSizeBytes: 16 * 1024 * 1024, nat: true, pid: null, lastError: null });
    expect(vm.id).toMatch(/^[0-9a-f]{12}$/);
    expect(vm.tap).toBe(`bg${vm.id}`);
    expect(vm.hostIp).toBe('172.16.0.1');
    expect(vm.guestIp).toBe('172.16.0.2');
    const second = env.json<any>(['vm', 'create', '--image', 'base', '--no-start']);
    expect(second.name).toMatch(/^[a-z]+-[a-z]+-[0-9a-f]{4}$/);
    expect(second.guestIp).toBe('172.16.0.6');
    const ls = env.json<any[]>(['vm', 'ls']);
    expect(ls.map((v) => v.name)).toEqual(['dev', second.name]);
    expect(env.cli(['ps', '-q']).stdout.trim().split('\n')).toEqual([vm.id, second.id]);
    expect(env.json<any>(['vm', 'show', vm.id.slice(0, 6)]).name).toBe('dev');
    const table = env.cli(['vm', 'ls']).stdout;
    expect(table).toMatch(/^NAME\s+STATE\s+IP/);
    expect(table).toMatch(/dev\s+stopped\s+172\.16\.0\.2/);
    const rm = env.cli(['vm', 'rm', second.name]);
    expect(rm.code).toBe(0);
    expect(env.json<any[]>(['vm', 'ls']).map((v) => v.name)).toEqual(['dev']);
    expect(existsSync(join(env.stateDir, 'vms', second.id))).toBe(false);
  });

  it('rejects bad VM inputs with a clear error and changes nothing', () => {
    const before = env.json<any[]>(['vm', 'ls']);
    const cases: [string[], number, RegExp][] = [
      [['vm', 'create', '--name', 'UPPER', '--image', 'base', '--no-start'], 2, /VM name "UPPER" is not valid/],
      [['vm', 'create', '--name', 'dev', '--image', 'base', '--no-start'], 1, /a VM named "dev" already exists/],
      [['vm', 'create', '--name', 'ok1', '--image', 'nope', '--no-start'], 1, /no image named "nope"/],
      [['vm', 'create', '--name', 'ok2', '--image', 'base', '--vcpus', '0', '--no-start'], 2, /--vcpus must be between 1 and 32/],
      [['vm', 'create', '--name', 'ok3', '--image', 'base', '--disk-size', '1M', '--no-start'], 1, /smaller than image "base"/],
      [['vm', 'create', '--name', 'ok4', '--image', 'base', '--disk-size', 'lots', '--no-start'], 2, /--disk-size/],
      [['vm', 'show', 'ghost'], 1, /no VM named "ghost"/],
      [['vm', 'frobnicate'], 2, /unknown command/],
      [['image', 'rm', 'base'], 1, /used by 1 VM \(dev\)/],
    ];
    for (const [args, code, pattern] of cases) {
      const r = env.cli(args);
      expect(r.code, args.join(' ')).toBe(code);
      expect(r.stderr, args.join(' ')).toMatch(pattern);
    }
    expect(env.json<any[]>(['vm', 'ls'])).toEqual(before);
    expect(env.json<any[]>(['image', 'ls'])).toHaveLength(1);
  });

  it('answers malformed API requests with the error shape and changes nothing', async () => {
    const before = env.json<any[]>(['vm', 'ls']);
    const bad: [string, string, string | undefined, number, string][] = [
      ['POST', '/v1/vm.create', '{not json', 400, 'invalid_argument'],
      ['POST', '/v1/vm.create', '{"name":"x1","image":"base","bogus":1}', 400, 'invalid_argument'],
      ['POST', '/v1/vm.create', '{"name":"x1","image":"base","vcpus":"2"}', 400, 'invalid_argument'],
      ['POST', '/v1/vm.create', '{"name":"x1"}', 400, 'invalid_argument'],
      ['POST', '/v1/vm.create', '[]', 400, 'invalid_argument'],
      ['POST', '/v1/vm.explode', '{}', 404, 'not_found'],
      ['GET', '/v1/vm.list', undefined, 400, 'invalid_argument'],
      ['POST', '/v2/anything', '{}', 404, 'not_found'],
      ['POST', '/v1/vm.get', '{"vm":"ghost"}', 404, 'not_found'],
    ];
    for (const [method, path, body, status, code] of bad) {
      const r = await rawRequest(env.socket, method, path, body);
      expect(r.status, `${method} ${path} ${body}`).toBe(status);
      expect(r.json.error.code).toBe(code);
      expect(typeof r.json.error.message).toBe('string');
      expect(r.json.error).toHaveProperty('details');
    }
    // A client of another build is refused before its method or body are judged by this build's schemas.
    for (const path of ['/v1/vm.create', '/v1/vm.teleport']) {
      const stale = await rawRequest(env.socket, 'POST', path, '{"name":"x1","image":"base","newField":1}', { 'x-banger-build': 'some-newer-build' });
      expect(stale.status).toBe(409);
      expect(stale.json.error.details.reason).toBe('stale_daemon');
    }
    const unknownField = await rawRequest(env.socket, 'POST', '/v1/vm.create', '{"name":"x1","image":"base","bogus":1}');
    expect(unknownField.json.error.message).toMatch(/unknown field "bogus"/);
    expect(env.json<any[]>(['vm', 'ls'])).toEqual(before);
  });

  it('streams events as NDJSON', async () => {
    const lines: any[] = [];
    const req = request({ socketPath: env.socket, method: 'GET', path: '/v1/events' });
    const got = new Promise<void>((resolve) => {
      req.on('response', (res) => {
        let buf = '';
        res.on('data', (d) => {
          buf += d;
          const parts = buf.split('\n');
          buf = parts.pop()!;
          for (const p of parts) lines.push(JSON.parse(p));
          if (lines.some((l) => l.type === 'vm.state' && l.vm.name === 'evt')) resolve();
        });
      });
    });
    req.end();
    await new Promise((r) => setTimeout(r, 100));
    const r = await (env as BangerEnv).cliAsync(['vm', 'create', '--name', 'evt', '--image', 'base', '--no-start']);
    expect(r.code).toBe(0);
    await got;
    req.destroy();
    expect(lines[0].type).toBe('hello');
    expect(lines.some((l) => l.type === 'progress' && l.phase === 'disk.copy')).toBe(true);
    expect(env.cli(['vm', 'rm', 'evt']).code).toBe(0);
  });

  it('keeps state across a daemon restart and removes its socket on SIGTERM', async () => {
    const before = env.json<any[]>(['vm', 'ls']);
    const pid = env.daemonPid()!;
    expect(env.cli(['daemon', 'stop']).code).toBe(0);
    expect(isAlive(pid)).toBe(false);
    expect(existsSync(env.socket)).toBe(false);
    const st = env.cli(['daemon', 'status']);
    expect(st.code).toBe(1);
    expect(st.stderr).toMatch(/not running/);
    expect(env.json<any[]>(['vm', 'ls'])).toEqual(before);
    const pid2 = env.daemonPid()!;
    expect(pid2).not.toBe(pid);
    process.kill(pid2, 'SIGTERM');
    for (let i = 0; i < 100 && isAlive(pid2); i++) await new Promise((r) => setTimeout(r, 20));
    expect(isAlive(pid2)).toBe(false);
    expect(existsSync(env.socket)).toBe(false);
    expect(existsSync(`${env.socket}.lock`)).toBe(false);
  });

  it('refuses a second daemon on the same socket', () => {
    env.cli(['daemon', 'start']);
    const first = env.daemonPid()!;
    const r = spawnSync(process.execPath, [BANGERD], { env: env.env, encoding: 'utf8', timeout: 10_000 });
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(new RegExp(`another bangerd \\(pid ${first}\\) already serves`));
    expect(isAlive(first)).toBe(true);
    expect(env.json<any>(['daemon', 'status']).pid).toBe(first);
  });

  it('replaces a daemon whose build id differs from the CLI', () => {
    const old = env.json<any>(['daemon', 'status']);
    const r = env.cli(['vm', 'ls', '--json'], { env: { BANGER_BUILD_ID: 'test-build-2' } });
    expect(r.code).toBe(0);
    const now = env.json<any>(['daemon', 'status'], { env: { BANGER_BUILD_ID: 'test-build-2' } });
    expect(now.buildId).toBe('test-build-2');
    expect(now.pid).not.toBe(old.pid);
    expect(isAlive(old.pid)).toBe(false);
    // and back again, with the VM records intact
    expect(env.json<any[]>(['vm', 'ls']).map((v) => v.name)).toEqual(['dev']);
  });
});

describe('the CLI bundle', () => {
  it('loads neither the daemon, the store nor the TUI: only node builtins, and the TUI through import()', async () => {
    const { readFileSync } = await import('node:fs');
    const { ROOT } = await import('../helpers/banger-env.js');
    const cli = readFileSync(join(ROOT, 'dist/banger.cjs'), 'utf8');
    const required = [...cli.matchAll(/require\("([^"]+)"\)/g)].map((m) => m[1]);
    expect(required.length).toBeGreaterThan(0);
    expect(required.filter((r) => !r.startsWith('node:'))).toEqual([]);
    expect(cli).not.toMatch(/better-sqlite3|CREATE TABLE|zod/);
    expect(cli).toMatch(/import\("\.\/tui\.js"\)/);
  });
});

describe('database migrations and settings', () => {
  it('migrates an empty database and refuses one newer than the code', async () => {
    const env = new BangerEnv();
    try {
      expect(env.cli(['image', 'ls']).code).toBe(0);
      expect(env.cli(['daemon', 'stop']).code).toBe(0);
      const db = new Database(env.database);
      expect(db.pragma('user_version', { simple: true })).toBe(1);
      expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
      const tables = (db.prepare("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name").all() as { name: string }[]).map((t) => t.name);
      expect(tables).toEqual(['images', 'resources', 'vm_status', 'vms']);
      db.pragma('user_version = 99');
      db.close();
      const r = env.cli(['image', 'ls']);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/could not start bangerd/);
      expect(r.stderr).toMatch(/schema version 99, newer than this banger knows \(1\)/);
      expect(existsSync(env.socket)).toBe(false);
    } finally {
      await env.cleanup();
    }
  });

  it('reports an invalid config.json and a bad environment override clearly', async () => {
    const env = new BangerEnv();
    try {
      mkdirSync(join(env.env.XDG_CONFIG_HOME, 'banger'), { recursive: true });
      const cfg = join(env.env.XDG_CONFIG_HOME, 'banger', 'config.json');
      writeFileSync(cfg, '{"netPool": "10.0.0.0/33x"}');
      let r = env.cli(['vm', 'ls']);
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(/config .*config\.json: "netPool": net pool "10.0.0.0\/33x" is not an IPv4 CIDR/);
      writeFileSync(cfg, '{"colour": "blue"}');
      r = env.cli(['vm', 'ls']);
      expect(r.stderr).toMatch(/unknown setting "colour"/);
      writeFileSync(cfg, '{}');
      r = env.cli(['vm', 'ls'], { env: { BANGER_ROOTFS_STRATEGY: 'magic' } });
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(/environment BANGER_ROOTFS_STRATEGY: rootfs strategy "magic" is not one of auto, dm, copy/);
      expect(existsSync(env.socket)).toBe(false);
    } finally {
      await env.cleanup();
    }
  });
});
