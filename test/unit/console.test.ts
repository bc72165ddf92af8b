import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { appendFileSync, closeSync, mkdtempSync, openSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { capConsoleLog, followFile, tailLines } from '../../src/firecracker/console.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'console-test-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const numbered = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, k) => `line ${from + k}`);

describe('tailLines', () => {
  it('gives the last n lines, with or without a final newline', () => {
    const p = join(dir, 'a.log');
    writeFileSync(p, `${numbered(1, 10).join('\n')}\n`);
    expect(tailLines(p, 3)).toEqual(['line 8', 'line 9', 'line 10']);
    writeFileSync(p, numbered(1, 10).join('\n'));
    expect(tailLines(p, 2)).toEqual(['line 9', 'line 10']);
  });

  it('gives every line when there are fewer than n, and none for an empty or missing file', () => {
    const p = join(dir, 'b.log');
    writeFileSync(p, 'only\r\n');
    expect(tailLines(p, 5)).toEqual(['only']);
    writeFileSync(p, '');
    expect(tailLines(p, 5)).toEqual([]);
    expect(tailLines(join(dir, 'missing.log'), 5)).toEqual([]);
  });

  it('keeps whole lines across 64 KiB chunk boundaries', () => {
    const p = join(dir, 'c.log');
    const long = 'y'.repeat(200_000);
    writeFileSync(p, `${numbered(1, 50_000).join('\n')}\n${long}\nlast\n`);
    expect(tailLines(p, 3)).toEqual(['line 50000', long, 'last']);
    expect(tailLines(p, 1)).toEqual(['last']);
  });

  it('reads only the end: a 3 GiB file (too big to read whole into a string) answers at once', () => {
    const p = join(dir, 'huge.log');
    writeFileSync(p, '');
    truncateSync(p, 3 * 1024 ** 3); // sparse: costs no disk
    appendFileSync(p, '\nkernel panic\nend of console\n');
    const t0 = performance.now();
    expect(tailLines(p, 2)).toEqual(['kernel panic', 'end of console']);
    expect(performance.now() - t0).toBeLessThan(1_000);
  });
});

describe('capConsoleLog', () => {
  it('leaves a file under the cap alone', () => {
    const p = join(dir, 'small.log');
    writeFileSync(p, 'hello\n');
    expect(capConsoleLog(p, 1024)).toBe(0);
    expect(readFileSync(p, 'utf8')).toBe('hello\n');
    expect(capConsoleLog(join(dir, 'missing.log'), 1024)).toBe(0);
  });

  it('keeps the last half of the cap, from a line start', () => {
    const p = join(dir, 'big.log');
    const lines = numbered(1, 1000);
    writeFileSync(p, `${lines.join('\n')}\n`);
    const before = statSync(p).size;
    const dropped = capConsoleLog(p, 4000);
    const after = readFileSync(p, 'utf8');
    expect(dropped).toBe(before - Buffer.byteLength(after));
    expect(Buffer.byteLength(after)).toBeLessThanOrEqual(2000);
    expect(Buffer.byteLength(after)).toBeGreaterThan(1900);
    expect(after.endsWith('line 1000\n')).toBe(true);
    // Starts at a whole line, and is exactly the file's former end.
    expect(after).toMatch(/^line \d+\n/);
    expect(`${lines.join('\n')}\n`.endsWith(after)).toBe(true);
  });

  it('lets a writer holding the file with O_APPEND go on at the new end, with no hole', () => {
    const p = join(dir, 'live.log');
    const fd = openSync(p, 'a');
    try {
      for (let i = 0; i < 2000; i++) writeSync(fd, `boot message ${i}\n`);
      capConsoleLog(p, 8192);
      writeSync(fd, 'after the cap\n');
    } finally {
      closeSync(fd);
    }
    const text = readFileSync(p, 'utf8');
    expect(text.includes('\0')).toBe(false);
    expect(Buffer.byteLength(text)).toBeLessThan(4096 + 100);
    expect(text.endsWith('boot message 1999\nafter the cap\n')).toBe(true);
  });
});

describe('followFile', () => {
  /** Collects what followFile delivers until it holds `want`. */
  async function until(got: () => string, want: string, ms = 3_000): Promise<void> {
    const deadline = Date.now() + ms;
    while (!got().includes(want)) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${JSON.stringify(want)}; got ${JSON.stringify(got())}`);
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  it('delivers the content, then what is appended, until aborted', async () => {
    const p = join(dir, 'f.log');
    writeFileSync(p, 'first\n');
    let got = '';
    const ac = new AbortController();
    const done = followFile(p, (s) => (got += s), ac.signal, { intervalMs: 10 });
    await until(() => got, 'first\n');
    appendFileSync(p, 'second ünïcödé\n');
    await until(() => got, 'second ünïcödé\n');
    ac.abort();
    await done;
    appendFileSync(p, 'after abort\n');
    await new Promise((r) => setTimeout(r, 50));
    expect(got).toBe('first\nsecond ünïcödé\n');
  });

  it('waits for a file that does not exist yet, and can start at an offset', async () => {
    const p = join(dir, 'late.log');
    let got = '';
    const ac = new AbortController();
    const done = followFile(p, (s) => (got += s), ac.signal, { intervalMs: 10, start: 4 });
    await new Promise((r) => setTimeout(r, 30));
    writeFileSync(p, 'skipthis\n');
    await until(() => got, 'this\n');
    ac.abort();
    await done;
    expect(got).toBe('this\n');
  });

  it.each([
    ['shorter than', 1_000],
    ['longer than', 20_000],
  ])('after a cap keeps a part %s its memory of sent bytes, goes on without repeats', async (_what, cap) => {
    const p = join(dir, 'capped.log');
    writeFileSync(p, `${numbered(1, 5000).join('\n')}\n`);
    let got = '';
    const ac = new AbortController();
    const done = followFile(p, (s) => (got += s), ac.signal, { intervalMs: 10 });
    await until(() => got, 'line 5000\n');
    expect(capConsoleLog(p, cap)).toBeGreaterThan(0);
    appendFileSync(p, 'line 5001\n');
    await until(() => got, 'line 5001\n');
    ac.abort();
    await done;
    expect(got).toBe(`${numbered(1, 5001).join('\n')}\n`);
  });
});
