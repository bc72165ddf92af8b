// The terminal layer: frames from Ink repainted line by line, and the hand-over to ssh.
import { describe, it, expect } from 'vitest';
import { EventEmitter } from 'node:events';
import { createElement } from 'react';
import { render, Box, Text } from 'ink';
import { FrameOutput, Terminal, frameOf, paintFrame, visibleWidth } from '../../src/tui/screen.js';

/** A terminal stand-in that records what is written to it. */
class FakeTty extends EventEmitter {
  isTTY = true;
  columns = 40;
  rows = 10;
  writes: string[] = [];
  write(s: string): boolean {
    this.writes.push(s);
    return true;
  }
  take(): string {
    const all = this.writes.join('');
    this.writes = [];
    return all;
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// Under CI=true Ink writes one frame at exit instead of updates (its is-in-ci check).
const isInkInCi = ['CI', 'CONTINUOUS_INTEGRATION'].some((k) => k in process.env && process.env[k] !== '0' && process.env[k] !== 'false');

/** The rows a piece of output writes to, from its cursor positionings "\x1b[<row>;1H". */
const rowsWritten = (out: string) => [...out.matchAll(/\x1b\[(\d+);1H/g)].map((m) => Number(m[1]));

describe('paintFrame', () => {
  it('paints every line of a first frame at its row', () => {
    expect(paintFrame([], ['a', 'b'], 10, 40)).toBe('\x1b[1;1Ha\x1b[0m\x1b[K\x1b[2;1Hb\x1b[0m\x1b[K');
  });

  it('rewrites only the lines that changed', () => {
    expect(rowsWritten(paintFrame(['a', 'b', 'c'], ['a', 'B', 'c'], 10, 40))).toEqual([2]);
    expect(paintFrame(['a'], ['a'], 10, 40)).toBe('');
  });

  it('erases rows that a shorter frame no longer uses', () => {
    expect(paintFrame(['a', 'b', 'c'], ['a'], 10, 40)).toBe('\x1b[2;1H\x1b[0m\x1b[K\x1b[3;1H\x1b[0m\x1b[K');
  });

  it('never writes below the screen, and does not erase after a full-width line', () => {
    expect(rowsWritten(paintFrame([], ['1', '2', '3', '4'], 2, 40))).toEqual([1, 2]);
    expect(paintFrame([], ['\x1b[1mxxxx\x1b[22m'], 5, 4)).toBe('\x1b[1;1H\x1b[1mxxxx\x1b[22m\x1b[0m');
  });

  it('measures width without escape sequences', () => {
    expect(visibleWidth('\x1b[32m● live\x1b[39m')).toBe(6);
  });
});

describe('frameOf', () => {
  it("strips Ink's erase of the previous frame and the final newline", () => {
    expect(frameOf('\x1b[2K\x1b[1A\x1b[2K\x1b[Gone\ntwo\n')).toEqual(['one', 'two']);
    expect(frameOf('\x1b[2J\x1b[3J\x1b[Hfull')).toEqual(['full']);
    expect(frameOf('\x1b[2K\x1b[G')).toEqual([]);
  });

  it('passes synchronized-update and cursor switches through', () => {
    expect(frameOf('\x1b[?2026h')).toBeNull();
    expect(frameOf('\x1b[?25l')).toBeNull();
    expect(frameOf('')).toBeNull();
  });
});

describe('FrameOutput', () => {
  it.skipIf(isInkInCi)("turns Ink's updates into repaints of the changed lines only", async () => {
    const tty = new FakeTty();
    const out = new FrameOutput(tty as unknown as NodeJS.WriteStream);
    const view = (n: number) =>
      createElement(Box, { flexDirection: 'column' }, createElement(Text, null, 'header'), createElement(Text, null, `count ${n}`), createElement(Text, null, 'footer'));
    const app = render(view(1), { stdout: out as unknown as NodeJS.WriteStream, patchConsole: false, exitOnCtrlC: false });
    await sleep(50);
    const first = tty.take();
    expect(rowsWritten(first)).toEqual([1, 2, 3]);
    expect(first).not.toContain('\x1b[2J');
    app.rerender(view(2));
    await sleep(80);
    const second = tty.take();
    expect(rowsWritten(second)).toEqual([2]);
    expect(second).toContain('count 2');
    expect(second).not.toMatch(/\x1b\[2K|\x1b\[1A|\x1b\[2J/);
    app.unmount();
    out.detach();
  });

  it('holds frames back while lent out and repaints the newest in full on release', () => {
    const tty = new FakeTty();
    const out = new FrameOutput(tty as unknown as NodeJS.WriteStream);
    out.write('a\nb\n');
    tty.take();
    out.hold();
    out.write('\x1b[2K\x1b[1A\x1b[2K\x1b[Ga\nc\n');
    out.write('\x1b[?25h');
    expect(tty.take()).toBe('');
    out.release();
    const painted = tty.take();
    expect(rowsWritten(painted)).toEqual([1, 2]);
    expect(painted).toContain('c');
  });

  it('reports the terminal size and repaints everything on a resize', () => {
    const tty = new FakeTty();
    const out = new FrameOutput(tty as unknown as NodeJS.WriteStream);
    let resized = 0;
    out.on('resize', () => resized++);
    out.write('a\nb\n');
    tty.take();
    tty.columns = 100;
    tty.emit('resize');
    expect(out.columns).toBe(100);
    expect(resized).toBe(1);
    const painted = tty.take();
    expect(painted.startsWith('\x1b[2J')).toBe(true);
    expect(rowsWritten(painted)).toEqual([1, 2]);
  });
});

describe('Terminal.handOver', () => {
  it('leaves the alternate screen and stops reading stdin for the child, then takes both back', async () => {
    const tty = new FakeTty();
    const events: string[] = [];
    const stdin = Object.assign(new EventEmitter(), {
      isTTY: true,
      pause: () => events.push('pause'),
      setRawMode: (on: boolean) => events.push(`raw ${on}`),
    });
    // Ink still listens for a moment after the hand-over begins, then lets go.
    const inkListener = () => {};
    stdin.on('readable', inkListener);
    setTimeout(() => stdin.off('readable', inkListener), 30);
    const term = new Terminal(stdin as unknown as NodeJS.ReadStream, tty as unknown as NodeJS.WriteStream);
    term.open();
    term.output.write('table\n');
    tty.take();
    const sigints = process.listenerCount('SIGINT');
    const code = await term.handOver(async () => {
      events.push(`run (readable listeners: ${stdin.listenerCount('readable')})`);
      events.push(`screen: ${JSON.stringify(tty.take())}`);
      expect(process.listenerCount('SIGINT')).toBe(sigints + 1);
      term.output.write('\x1b[2K\x1b[Gtable changed\n');
      return 7;
    });
    expect(code).toBe(7);
    expect(events).toEqual(['pause', 'raw false', 'run (readable listeners: 0)', `screen: ${JSON.stringify('\x1b[?25h\x1b[?1049l')}`]);
    expect(process.listenerCount('SIGINT')).toBe(sigints);
    const back = tty.take();
    expect(back.startsWith('\x1b[?1049h\x1b[2J\x1b[H\x1b[?25l')).toBe(true);
    expect(back).toContain('\x1b[1;1Htable changed');
    term.close();
    expect(tty.take()).toBe('\x1b[?25h\x1b[?1049l');
    term.close();
    expect(tty.take()).toBe('');
  });
});
