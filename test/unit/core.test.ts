import { describe, it, expect } from 'vitest';
import { mkdtempSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { loadConfig } from '../../src/core/config.js';
import { resolvePaths } from '../../src/core/paths.js';
import { unwind, withRollback } from '../../src/core/unwind.js';
import { HostCommandError, wrapError, causeChain } from '../../src/core/errors.js';
import { KeyedLock } from '../../src/daemon/locks.js';
import { schemas, describeZodError } from '../../src/daemon/schemas.js';
import { resolveRef } from '../../src/daemon/service.js';

describe('paths and settings', () => {
  it('follows XDG variables and falls back to /tmp/banger-<uid> without XDG_RUNTIME_DIR', () => {
    const p = resolvePaths({ HOME: '/home/u', XDG_STATE_HOME: '/s' }, 1000);
    expect(p.database).toBe('/s/banger/banger.db');
    expect(p.daemonLog).toBe('/s/banger/bangerd.log');
    expect(p.imagesDir).toBe('/home/u/.local/share/banger/images');
    expect(p.sshKey).toBe('/home/u/.local/share/banger/ssh/id_ed25519');
    expect(p.socket).toBe('/tmp/banger-1000/bangerd.sock');
    expect(resolvePaths({ HOME: '/h', XDG_RUNTIME_DIR: '/run/user/5' }).socket).toBe('/run/user/5/banger/bangerd.sock');
  });

  it('reads config.json and lets the environment win', () => {
    const home = mkdtempSync(join(tmpdir(), 'bgcfg-'));
    mkdirSync(join(home, '.config/banger'), { recursive: true });
    writeFileSync(join(home, '.config/banger/config.json'), JSON.stringify({ netPool: '10.9.0.0/24', firecracker: '/opt/fc' }));
    const c = loadConfig({ HOME: home, BANGER_NET_POOL: '10.8.0.0/16' });
    expect(c.settings.netPool).toBe('10.8.0.0/16');
    expect(c.settings.firecracker).toBe('/opt/fc');
    expect(c.settings.rootfsStrategy).toBe('auto');
    expect(() => loadConfig({ HOME: home, BANGER_SOCKET: 'relative.sock' })).toThrow(/must be absolute/);
    expect(() => loadConfig({ HOME: home, BANGER_SOCKET: '/' + 'x'.repeat(120) })).toThrow(/at most 107/);
    expect(() => loadConfig({ HOME: home, XDG_RUNTIME_DIR: '/' + 'r'.repeat(80) })).toThrow(/VM API sockets would be 1\d\d bytes long .*set XDG_RUNTIME_DIR to a shorter directory/);
    expect(() => loadConfig({ HOME: home, XDG_RUNTIME_DIR: '/' + 'r'.repeat(70) })).not.toThrow();
    writeFileSync(join(home, '.config/banger/config.json'), '{"netPool": 5}');
    expect(() => loadConfig({ HOME: home })).toThrow(/"netPool" must be a string/);
  });
});

describe('unwind', () => {
  it('runs every undo in reverse even when one fails, and reports all failures', async () => {
    const ran: string[] = [];
    const err = await unwind([
      { name: 'a', run: async () => void ran.push('a') },
      { name: 'b', run: async () => { ran.push('b'); throw new Error('b broke'); } },
      { name: 'c', run: async () => { ran.push('c'); throw new Error('c broke'); } },
    ]).catch((e) => e);
    expect(ran).toEqual(['c', 'b', 'a']);
    expect(err).toBeInstanceOf(AggregateError);
    expect(err.errors.map((e: Error) => e.message)).toEqual(['c: c broke', 'b: b broke']);
  });

  it('rolls back on failure and reports the original error, or both when rollback fails', async () => {
    const undone: string[] = [];
    await expect(
      withRollback('setup', async (onUndo) => {
        onUndo({ name: 'one', run: async () => void undone.push('one') });
        throw new Error('step two failed');
      }),
    ).rejects.toThrow('step two failed');
    expect(undone).toEqual(['one']);
    const both = await withRollback('setup', async (onUndo) => {
      onUndo({ name: 'one', run: async () => { throw new Error('undo broke'); } });
      throw new Error('step two failed');
    }).catch((e) => e);
    expect(both).toBeInstanceOf(AggregateError);
    expect(both.message).toMatch(/step two failed; and setup rollback failed: one: undo broke/);
  });
});

describe('errors', () => {
  it('shapes host command failures like execa and keeps a readable trail', () => {
    const e = new HostCommandError({ argv: ['ip', 'tuntap', 'add'], exitCode: 1, stderr: 'ioctl(TUNSETIFF): Operation not permitted\n' });
    expect(e.shortMessage).toBe('ip tuntap add exited 1: ioctl(TUNSETIFF): Operation not permitted');
    const w = wrapError('starting vm dev', wrapError('creating tap bg1', e));
    expect(w.message).toBe('starting vm dev: creating tap bg1: ip tuntap add exited 1: ioctl(TUNSETIFF): Operation not permitted');
    expect(w.code).toBe('host_command_failed');
    expect(causeChain(w)).toHaveLength(3);
    expect(new HostCommandError({ argv: ['sleep'], exitCode: null, timedOut: true }).message).toBe('sleep timed out');
  });
});

describe('locks', () => {
  it('serializes work on one key and runs different keys in parallel', async () => {
    const lock = new KeyedLock();
    const log: string[] = [];
    const task = (key: string, tag: string, ms: number) =>
      lock.run(key, async () => {
        log.push(`start ${tag}`);
        await new Promise((r) => setTimeout(r, ms));
        log.push(`end ${tag}`);
      });
    await Promise.all([task('a', 'a1', 30), task('a', 'a2', 1), task('b', 'b1', 5)]);
    expect(log.indexOf('end a1')).toBeLessThan(log.indexOf('start a2'));
    expect(log.indexOf('start b1')).toBeLessThan(log.indexOf('end a1'));
    expect(lock.isBusy('a')).toBe(false);
  });
});

describe('API schemas', () => {
  it('rejects unknown fields, wrong types and bad names', () => {
    const r = schemas['vm.create'].safeParse({ image: 'x', name: 'Bad', vcpus: '2', extra: true });
    expect(r.success).toBe(false);
    const msg = describeZodError(r.error!);
    expect(msg).toMatch(/unknown field "extra"/);
    expect(msg).toMatch(/name: must match/);
    expect(msg).toMatch(/vcpus:/);
    expect(schemas['vm.list'].safeParse({}).success).toBe(true);
    expect(schemas['vm.list'].safeParse({ a: 1 }).success).toBe(false);
    expect(schemas['image.add'].safeParse({ name: 'a', kernel: 'rel/path', rootfs: '/r' }).success).toBe(false);
  });

  it('resolves names first, then unique id prefixes', () => {
    const all = [
      { id: 'abc111111111', name: 'one' },
      { id: 'abc222222222', name: 'abc2' },
    ];
    expect(resolveRef('VM', 'one', all).id).toBe('abc111111111');
    expect(resolveRef('VM', 'abc2', all).name).toBe('abc2');
    expect(resolveRef('VM', 'abc1', all).name).toBe('one');
    expect(() => resolveRef('VM', 'abc', all)).toThrow(/matches 2 VMs/);
    expect(() => resolveRef('VM', 'zzz', all)).toThrow(/no VM named "zzz"/);
  });
});
