import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  PIDFILE_WRAPPER_SCRIPT,
  findFirecrackerProcesses,
  isSameProcess,
  parseFirecrackerArgs,
  parseStatStartTime,
  readCmdline,
  readStartTime,
} from '../../src/firecracker/proc.js';

/** A /proc/<pid>/stat line with the given comm and starttime (field 22). */
function statLine(pid: number, comm: string, startTime: string, state = 'S'): string {
  // Fields 3..21: state, ppid, pgrp, session, tty_nr, tpgid, flags, minflt, cminflt, majflt,
  // cmajflt, utime, stime, cutime, cstime, priority, nice, num_threads, itrealvalue.
  const mid = [state, '1', String(pid), String(pid), '0', '-1', '4194560', '120', '0', '0', '0', '3', '1', '0', '0', '20', '0', '1', '0'];
  return `${pid} (${comm}) ${mid.join(' ')} ${startTime} 123456789 512 18446744073709551615 1 1 0 0 0 0 0 0 0 17 3 0 0 0 0 0\n`;
}

describe('parseStatStartTime', () => {
  it('reads field 22 of a plain stat line', () => {
    expect(parseStatStartTime(statLine(4242, 'firecracker', '987654'))).toBe('987654');
  });

  it('counts fields from the last parenthesis when comm holds spaces and parentheses', () => {
    expect(parseStatStartTime(statLine(4242, 'fc (x) y) 7 8', '31337'))).toBe('31337');
    expect(parseStatStartTime(statLine(7, ') ) (', '5'))).toBe('5');
  });

  it('gives null for a truncated or malformed line', () => {
    expect(parseStatStartTime('4242 (fc) S 1 2 3')).toBeNull();
    expect(parseStatStartTime('garbage')).toBeNull();
  });
});

describe('readCmdline and readStartTime on the real /proc', () => {
  let dir: string;
  let child: ChildProcess | undefined;
  afterEach(() => {
    // sh and its sleep share the group the detached spawn made.
    if (child?.pid) {
      try {
        process.kill(-child.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    rmSync(dir, { recursive: true, force: true });
  });

  it('read a live process whose comm holds spaces and parentheses', async () => {
    dir = mkdtempSync(join(tmpdir(), 'proc-test-'));
    const odd = join(dir, 'fc (x) y');
    // A copy of sh under an awkward name; "; :" keeps sh from exec'ing sleep, so its comm stays.
    copyFileSync(execFileSync('sh', ['-c', 'command -v sh'], { encoding: 'utf8' }).trim(), odd);
    chmodSync(odd, 0o755);
    child = spawn(odd, ['-c', 'sleep 30; :', 'sh', '--id', 'abc'], { stdio: 'ignore', detached: true });
    await new Promise((r) => child!.once('spawn', r));
    const pid = child.pid!;
    expect(readFileSync(`/proc/${pid}/stat`, 'utf8')).toContain('(fc (x) y)');
    expect(readCmdline(pid)).toEqual([odd, '-c', 'sleep 30; :', 'sh', '--id', 'abc']);
    const started = readStartTime(pid);
    expect(started).toMatch(/^\d+$/);
    // Clock ticks since boot: the child started no earlier than this test process.
    expect(Number(started)).toBeGreaterThanOrEqual(Number(readStartTime(process.pid)));
    expect(isSameProcess(pid, started!, 'abc')).toBe(true);
    expect(isSameProcess(pid, started!, 'abd')).toBe(false);
  });

  it('give null for a pid that does not exist', () => {
    expect(readCmdline(2 ** 22 + 1)).toBeNull();
    expect(readStartTime(2 ** 22 + 1)).toBeNull();
  });
});

describe('parseFirecrackerArgs', () => {
  it('finds --api-sock X --id Y wherever they start', () => {
    expect(parseFirecrackerArgs(['firecracker', '--api-sock', '/run/a.sock', '--id', 'abc'])).toEqual({ apiSock: '/run/a.sock', vmId: 'abc' });
    expect(parseFirecrackerArgs(['node', '/x/fc-standin.js', '--api-sock', '/s', '--id', 'i'])).toEqual({ apiSock: '/s', vmId: 'i' });
    expect(parseFirecrackerArgs(['firecracker', '--id', 'abc', '--api-sock', '/s'])).toBeNull();
    expect(parseFirecrackerArgs(['firecracker', '--api-sock', '/s', '--id'])).toBeNull();
  });
});

describe('isSameProcess and findFirecrackerProcesses over a fake /proc', () => {
  let proc: string;
  const add = (pid: number, argv: string[], startTime: string, comm = 'firecracker', state = 'S') => {
    mkdirSync(join(proc, String(pid)));
    writeFileSync(join(proc, String(pid), 'cmdline'), argv.length ? `${argv.join('\0')}\0` : '');
    writeFileSync(join(proc, String(pid), 'stat'), statLine(pid, comm, startTime, state));
  };

  beforeEach(() => {
    proc = mkdtempSync(join(tmpdir(), 'fake-proc-'));
    mkdirSync(join(proc, 'self'));
    writeFileSync(join(proc, 'uptime'), '1.0 1.0\n');
    add(100, ['/usr/bin/firecracker', '--api-sock', '/run/banger/vms/aaaaaaaaaaaa.sock', '--id', 'aaaaaaaaaaaa'], '5000', 'fc_vcpu 0');
    add(101, ['sudo', '-n', 'sh', '-c', PIDFILE_WRAPPER_SCRIPT, '/v/firecracker.pid', 'firecracker', '--api-sock', '/s', '--id', 'bbbbbbbbbbbb'], '6000', 'sudo');
    add(102, ['firecracker', '--api-sock', '/run/banger/vms/bbbbbbbbbbbb.sock', '--id', 'bbbbbbbbbbbb'], '6001', 'firecracker');
    add(103, ['sleep', '100'], '7000', 'sleep');
    add(104, [], '7001', 'firecracker', 'Z'); // a zombie: empty command line
    add(105, [], '7002', 'sh'); // mid-exec: the command line reads empty for an instant
  });
  afterEach(() => rmSync(proc, { recursive: true, force: true }));

  it('is true only for the same pid, start time and --id', () => {
    expect(isSameProcess(100, '5000', 'aaaaaaaaaaaa', proc)).toBe(true);
    expect(isSameProcess(100, '5001', 'aaaaaaaaaaaa', proc)).toBe(false); // pid reused
    expect(isSameProcess(100, '5000', 'bbbbbbbbbbbb', proc)).toBe(false); // another VM
    expect(isSameProcess(103, '7000', 'aaaaaaaaaaaa', proc)).toBe(false); // not firecracker
    expect(isSameProcess(104, '7001', 'aaaaaaaaaaaa', proc)).toBe(false); // zombie
    expect(isSameProcess(105, '7002', 'aaaaaaaaaaaa', proc)).toBe(true); // same start time, alive, mid-exec
    expect(isSameProcess(999, '5000', 'aaaaaaaaaaaa', proc)).toBe(false); // gone
  });

  it('finds firecracker processes with their socket and id, leaving wrappers out', () => {
    expect(findFirecrackerProcesses(proc)).toEqual([
      { pid: 100, vmId: 'aaaaaaaaaaaa', startTime: '5000', apiSock: '/run/banger/vms/aaaaaaaaaaaa.sock' },
      { pid: 102, vmId: 'bbbbbbbbbbbb', startTime: '6001', apiSock: '/run/banger/vms/bbbbbbbbbbbb.sock' },
    ]);
  });
});
