// The real terminal: the alternate screen, a stdout stand-in that Ink writes its frames to and
// that repaints only the lines that changed, and handing the terminal to ssh and back.
//
// Why the stand-in: Ink 6.8's standard renderer erases and rewrites every line on each update,
// and its incremental renderer lands one row low when a frame ends with a newline. On the
// alternate screen a frame always starts at row 1, so each frame is painted here by absolute
// position, changed lines only: a VM changing state rewrites one row.
import { EventEmitter } from 'node:events';

const ESC = '\x1b[';
/** Writes that pass straight through: synchronized update on/off (DEC 2026), cursor show/hide. */
const PASS_THROUGH = /^(?:\x1b\[\?2026[hl]|\x1b\[\?25[hl])+$/;
/** What Ink puts before a frame to erase the last one: "\x1b[2K\x1b[1A…\x1b[2K\x1b[G", or a clear. */
const ERASE_PREFIX = /^(?:\x1b\[(?:2K|\d*A|G|2J|3J|H))*/;
// SGR, CSI and OSC sequences, for measuring a line's visible width.
const ANSI = /\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)/g;

export function visibleWidth(line: string): number {
  return [...line.replace(ANSI, '')].length;
}

/**
 * The bytes that turn frame `prev` into frame `next` on screen (row 1 = line 0): each changed
 * line is rewritten in place and what is left of the row erased; rows past `rows` are never touched.
 */
export function paintFrame(prev: string[], next: string[], rows: number, columns: number): string {
  let out = '';
  const count = Math.min(Math.max(prev.length, next.length), rows);
  for (let i = 0; i < count; i++) {
    const line = next[i] ?? '';
    if (line === prev[i]) continue;
    // A line as wide as the screen leaves the cursor in the pending-wrap spot, where an erase
    // would remove its last character; it covers the row anyway.
    const erase = visibleWidth(line) >= columns ? '' : `${ESC}K`;
    out += `${ESC}${i + 1};1H${line}${ESC}0m${erase}`;
  }
  return out;
}

/** Splits what Ink wrote into frame lines; null for a write that is not a frame. */
export function frameOf(text: string): string[] | null {
  if (text === '' || PASS_THROUGH.test(text)) return null;
  const body = text.slice((ERASE_PREFIX.exec(text)?.[0] ?? '').length);
  if (body === '') return [];
  return (body.endsWith('\n') ? body.slice(0, -1) : body).split('\n');
}

type WriteCallback = (err?: Error | null) => void;

/**
 * A stdout for Ink: reports the real terminal's size, turns each frame into a repaint of the
 * changed lines, and holds frames back while the terminal is lent to another program.
 */
export class FrameOutput extends EventEmitter {
  private shown: string[] = [];
  private latest: string[] = [];
  private isHeld = false;
  readonly isTTY = true;

  constructor(private readonly target: NodeJS.WriteStream) {
    super();
    target.on('resize', this.onResize);
  }

  get columns(): number {
    return this.target.columns || 80;
  }

  get rows(): number {
    return this.target.rows || 24;
  }

  write(chunk: string | Uint8Array, encoding?: BufferEncoding | WriteCallback, callback?: WriteCallback): boolean {
    const done = typeof encoding === 'function' ? encoding : callback;
    const text = typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8');
    const frame = frameOf(text);
    if (frame === null) {
      if (text !== '' && !this.isHeld) this.target.write(text);
    } else {
      this.latest = frame;
      if (!this.isHeld) this.paint();
    }
    done?.();
    return true;
  }

  /** Stops painting; frames still arrive and the newest is painted on release. */
  hold(): void {
    this.isHeld = true;
  }

  /** Paints the newest frame in full on a screen the caller has just cleared. */
  release(): void {
    this.isHeld = false;
    this.shown = [];
    this.paint();
  }

  detach(): void {
    this.target.off('resize', this.onResize);
  }

  private paint(): void {
    const out = paintFrame(this.shown, this.latest, this.rows, this.columns);
    this.shown = this.latest;
    if (out) this.target.write(out);
  }

  private readonly onResize = () => {
    // The terminal reflowed the old frame: start from a clean screen, then tell Ink.
    if (!this.isHeld) {
      this.target.write(`${ESC}2J`);
      this.shown = [];
      this.paint();
    }
    this.emit('resize');
  };
}

const ENTER_ALT = `${ESC}?1049h${ESC}2J${ESC}H`;
const LEAVE_ALT = `${ESC}?1049l`;
const SHOW_CURSOR = `${ESC}?25h`;
const HIDE_CURSOR = `${ESC}?25l`;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The terminal the TUI runs in: the alternate screen while open, lent out for ssh. */
export class Terminal {
  readonly output: FrameOutput;
  private isOpen = false;

  constructor(
    readonly stdin: NodeJS.ReadStream,
    private readonly stdout: NodeJS.WriteStream,
  ) {
    this.output = new FrameOutput(stdout);
  }

  open(): void {
    if (this.isOpen) return;
    this.isOpen = true;
    this.stdout.write(ENTER_ALT + HIDE_CURSOR);
    process.on('exit', this.close);
  }

  /** Leaves the alternate screen and shows the cursor; safe to call twice. */
  readonly close = (): void => {
    if (!this.isOpen) return;
    this.isOpen = false;
    this.output.detach();
    this.stdout.write(SHOW_CURSOR + LEAVE_ALT);
    process.off('exit', this.close);
  };

  /**
   * Lends the terminal to run (ssh with inherited stdio) and takes it back. The caller has told
   * Ink to stop reading keys; here stdin stops reading too, or it would eat the child's input.
   */
  async handOver<T>(run: () => Promise<T>): Promise<T> {
    this.output.hold();
    // Ink lets go of stdin in an effect after the next commit: wait for that (bounded).
    for (let i = 0; i < 100 && this.stdin.listenerCount('readable') > 0; i++) await sleep(10);
    // With no 'readable' listener left, pause() makes process.stdin stop reading the tty.
    this.stdin.pause();
    if (this.stdin.isTTY) this.stdin.setRawMode(false);
    const ignore = () => {};
    // Ctrl-C while ssh connects reaches this process group too; the TUI must survive it.
    process.on('SIGINT', ignore);
    this.stdout.write(SHOW_CURSOR + LEAVE_ALT);
    try {
      return await run();
    } finally {
      process.off('SIGINT', ignore);
      this.stdout.write(ENTER_ALT + HIDE_CURSOR);
      this.output.release();
    }
  }
}
