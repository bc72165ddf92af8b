import { describe, it, expect, afterEach } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import Database from 'better-sqlite3';
import { openDatabase } from '../../src/store/db.js';
import { Store } from '../../src/store/store.js';
import { MIGRATIONS } from '../../src/store/migrations.js';
import type { Image } from '../../src/core/models.js';

const dirs: string[] = [];
const tempDb = () => {
  const d = mkdtempSync(join(tmpdir(), 'bgstore-'));
  dirs.push(d);
  return join(d, 'banger.db');
};
afterEach(() => dirs.splice(0).forEach((d) => rmSync(d, { recursive: true, force: true })));

const image: Image = { id: 'aaaaaaaaaaaa', name: 'base', kernelPath: '/k', rootfsPath: '/r', initrdPath: null, bootArgs: '', rootfsSizeBytes: 1024, createdAt: '2026-01-01T00:00:00.000Z' };
const spec = (id: string, name: string) => ({ id, name, imageId: image.id, vcpus: 1, memoryMib: 512, diskSizeBytes: 1024, nat: true, diskStrategy: 'copy' as const, createdAt: new Date().toISOString() });
const net = (i: number) => ({ netIndex: i, hostIp: `10.0.0.${i * 4 + 1}`, guestIp: `10.0.0.${i * 4 + 2}`, tap: `bg${i}`, mac: '06:00:00:00:00:00' });

describe('database', () => {
  it('migrates an empty file step by step, in WAL mode with foreign keys', () => {
    const file = tempDb();
    const db = openDatabase(file);
    expect(db.pragma('user_version', { simple: true })).toBe(MIGRATIONS.length);
    expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
    expect(db.pragma('foreign_keys', { simple: true })).toBe(1);
    expect(db.pragma('busy_timeout', { simple: true })).toBe(5000);
    db.close();
  });

  it('applies only the missing steps, and rolls back a failing step whole', () => {
    const file = tempDb();
    openDatabase(file, ['CREATE TABLE a (x)']).close();
    expect(() => openDatabase(file, ['CREATE TABLE a (x)', 'CREATE TABLE b (y); CREATE TABLE broken ('])).toThrow();
    const db = new Database(file);
    expect(db.pragma('user_version', { simple: true })).toBe(1);
    expect(db.prepare("SELECT count(*) n FROM sqlite_master WHERE name='b'").get()).toEqual({ n: 0 });
    db.close();
    const ok = openDatabase(file, ['CREATE TABLE a (x)', 'CREATE TABLE b (y)']);
    expect(ok.pragma('user_version', { simple: true })).toBe(2);
    ok.close();
  });

  it('refuses a database newer than the code', () => {
    const file = tempDb();
    const raw = new Database(file);
    raw.pragma('user_version = 7');
    raw.close();
    expect(() => openDatabase(file)).toThrow(/schema version 7, newer than this banger knows \(1\)/);
  });
});

describe('store', () => {
  it('keeps spec apart from status and refuses duplicate names and addresses', () => {
    const store = new Store(openDatabase(tempDb()));
    store.insertImage(image);
    expect(() => store.insertImage({ ...image, id: 'bbbbbbbbbbbb' })).toThrow(/image "base" already exists/);
    const vm = store.insertVm(spec('111111111111', 'one'), 'creating', () => net(0));
    expect(vm.state).toBe('creating');
    expect(() => store.insertVm(spec('222222222222', 'one'), 'creating', () => net(1))).toThrow(/a VM named "one" already exists/);
    expect(() => store.insertVm(spec('333333333333', 'three'), 'creating', () => net(0))).toThrow(/UNIQUE/);
    const picked: number[][] = [];
    store.insertVm(spec('444444444444', 'four'), 'creating', (used) => {
      picked.push(used);
      return net(1);
    });
    expect(picked).toEqual([[0]]);
    const updated = store.updateStatus(vm.id, { state: 'running', pid: 42, pidStartTime: '123' });
    expect(updated).toMatchObject({ state: 'running', pid: 42, name: 'one', vcpus: 1 });
    expect(() => store.deleteImage(image.id)).toThrow(/FOREIGN KEY/);
  });

  it('journals host handles per VM and forgets them', () => {
    const store = new Store(openDatabase(tempDb()));
    store.record('v1', 'loop', '/dev/loop3', '/img');
    store.record('v1', 'loop', '/dev/loop3', '/img');
    store.record('v1', 'dm', 'banger-v1');
    store.record('v2', 'tap', 'bgv2');
    expect(store.list('v1').map((r) => [r.kind, r.handle, r.detail])).toEqual([
      ['loop', '/dev/loop3', '/img'],
      ['dm', 'banger-v1', ''],
    ]);
    store.forget('v1', 'loop', '/dev/loop3');
    expect(store.list('v1').map((r) => r.handle)).toEqual(['banger-v1']);
    expect(store.listAll()).toHaveLength(2);
  });
});
