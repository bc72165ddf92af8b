// The real Runner: child_process with an argument vector, never a shell.
import { spawn as spawnChild } from 'node:child_process';
import { openSync, closeSync } from 'node:fs';
import { HostCommandError } from '../core/errors.js';
import type { RunOptions, RunResult, Runner, SpawnOptions, SpawnedProcess } from '../core/ports.js';

const DEFAULT_TIMEOUT_MS = 30_000;

export class ExecRunner implements Runner {
  run(argv: string[], options: RunOptions = {}): Promise<RunResult> {
    const check = options.check ?? true;
    const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    return new Promise((resolve, reject) => {
      const child = spawnChild(argv[0], argv.slice(1), {
        stdio: ['pipe', 'pipe', 'pipe'],
        env: options.env ? { ...process.env, ...options.env } : process.env,
      });
      let stdout = '';
      let stderr = '';
      let timedOut = false;
      let settled = false;
      const timer = setTimeout(() => {
        timedOut = true;
        child.kill('SIGKILL');
      }, timeoutMs);
      child.stdout.setEncoding('utf8').on('data', (d: string) => {
        stdout += d;
        options.onStdout?.(d);
      });
      child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
      child.on('error', (cause) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        reject(new HostCommandError({ argv, exitCode: null, stdout, stderr, cause }));
      });
      child.on('close', (code, signal) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (timedOut || signal || (code !== 0 && check)) {
          reject(new HostCommandError({ argv, exitCode: code, signal, stdout, stderr, timedOut }));
          return;
        }
        resolve({ exitCode: code ?? 0, stdout, stderr });
      });
      child.stdin.on('error', () => {});
      child.stdin.end(options.input ?? '');
    });
  }

  spawn(argv: string[], options: SpawnOptions = {}): SpawnedProcess {
    const fd = options.outputFile ? openSync(options.outputFile, 'a', 0o600) : 'ignore';
    try {
      const child = spawnChild(argv[0], argv.slice(1), {
        detached: true,
        stdio: ['ignore', fd, fd],
        env: options.env ? { ...process.env, ...options.env } : process.env,
        cwd: options.cwd,
      });
      const exited = new Promise<{ code: number | null; signal: string | null }>((resolve) => {
        child.on('error', () => resolve({ code: null, signal: null }));
        child.on('exit', (code, signal) => resolve({ code, signal }));
      });
      child.unref();
      if (child.pid === undefined) {
        throw new HostCommandError({ argv, exitCode: null, stderr: `could not start ${argv[0]}` });
      }
      return { pid: child.pid, exited };
    } finally {
      if (typeof fd === 'number') closeSync(fd);
    }
  }
}
