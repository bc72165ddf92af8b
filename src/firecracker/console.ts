// The guest's serial console log (Firecracker's stdout and stderr, appended to vms/<id>/console.log):
// its last lines for error messages, a size cap, and following it for `vm logs -f`.
import { closeSync, fstatSync, openSync, readSync, statSync, writeSync, ftruncateSync } from 'node:fs';

const CHUNK = 64 * 1024;

/** Bytes [start, end) of an open file. */
function readRange(fd: number, start: number, end: number): Buffer {
  const buf = Buffer.alloc(Math.max(0, end - start));
  let done = 0;
  while (done < buf.length) {
    const n = readSync(fd, buf, done, buf.length - done, start + done);
    if (n === 0) break;
    done += n;
  }
  return buf.subarray(0, done);
}

/**
 * The last n lines of a file, read backwards from its end in 64 KiB chunks, so a large log costs
 * only what is shown. A missing file has no lines.
 */
export function tailLines(path: string, n: number): string[] {
  if (n <= 0) return [];
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  try {
    const size = fstatSync(fd).size;
    let start = size;
    let tail = Buffer.alloc(0);
    let newlines = 0;
    // n whole lines need n+1 newlines in view: the one ending the line before them, and theirs.
    while (start > 0 && newlines < n + 1) {
      const from = Math.max(0, start - CHUNK);
      const chunk = readRange(fd, from, start);
      for (const b of chunk) if (b === 0x0a) newlines++;
      tail = Buffer.concat([chunk, tail]);
      start = from;
    }
    const lines = tail.toString('utf8').split('\n');
    if (lines.length > 0 && lines[lines.length - 1] === '') lines.pop();
    // The first piece may be the end of a longer line cut at the chunk boundary.
    if (start > 0 && lines.length > n) lines.shift();
    return lines.slice(-n).map((l) => (l.endsWith('\r') ? l.slice(0, -1) : l));
  } finally {
    closeSync(fd);
  }
}

/**
 * Keeps a console log under maxBytes: when larger, its last maxBytes/2 bytes (from a line start
 * when one is there) are moved to the front and the file is truncated to them, in place. In place
 * matters: Firecracker holds the file open with O_APPEND, so its next write lands at the new end
 * instead of leaving a hole at the old offset; a rename would leave it writing to an unlinked file.
 * Whatever it appends between the read and the truncate is lost, a few lines at most.
 * Returns the number of bytes dropped (0 when the file was small enough or is missing).
 */
export function capConsoleLog(path: string, maxBytes: number): number {
  let size: number;
  try {
    size = statSync(path).size;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 0;
    throw err;
  }
  if (size <= maxBytes) return 0;
  const fd = openSync(path, 'r+');
  try {
    const now = fstatSync(fd).size;
    let keep = readRange(fd, now - Math.floor(maxBytes / 2), now);
    const nl = keep.indexOf(0x0a);
    if (nl >= 0 && nl + 1 < keep.length) keep = keep.subarray(nl + 1);
    ftruncateSync(fd, 0);
    let done = 0;
    while (done < keep.length) done += writeSync(fd, keep, done, keep.length - done, done);
    return now - keep.length;
  } finally {
    closeSync(fd);
  }
}

/**
 * Where to go on in a file that shrank, given the last bytes delivered: after them when the file
 * still holds them whole, else after the longest start of the file that ends them (the kept part
 * was shorter than what we remember), else from the start.
 */
export function resumeAfterShrink(content: Buffer, lastSent: Buffer): number {
  if (lastSent.length === 0) return 0;
  const at = content.lastIndexOf(lastSent);
  if (at >= 0) return at + lastSent.length;
  for (let k = Math.min(lastSent.length, content.length); k > 0; k--) {
    if (content.subarray(0, k).equals(lastSent.subarray(lastSent.length - k))) return k;
  }
  return 0;
}

export interface FollowOptions {
  /** Byte offset to start from; default 0 (the whole file, then what follows). */
  start?: number;
  /** Polling period; default 200 ms. */
  intervalMs?: number;
}

/**
 * Calls onData with the file's content from opts.start on, then with whatever is appended, until
 * signal aborts (`tail -f`). Survives the file not existing yet and capConsoleLog shrinking it:
 * after a shrink it resumes right after the last bytes it had delivered, found again in the new content.
 */
export async function followFile(
  path: string,
  onData: (chunk: string) => void,
  signal: AbortSignal,
  opts: FollowOptions = {},
): Promise<void> {
  const intervalMs = opts.intervalMs ?? 200;
  let position = opts.start ?? 0;
  let lastSent = Buffer.alloc(0);
  const decoder = new TextDecoder('utf-8');
  const poll = () => {
    let fd: number;
    try {
      fd = openSync(path, 'r');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw err;
    }
    try {
      const size = fstatSync(fd).size;
      if (size < position) position = resumeAfterShrink(readRange(fd, 0, size), lastSent);
      while (position < size) {
        const chunk = readRange(fd, position, Math.min(size, position + CHUNK));
        if (chunk.length === 0) break;
        position += chunk.length;
        lastSent = Buffer.concat([lastSent, chunk]).subarray(-4096);
        const text = decoder.decode(chunk, { stream: true });
        if (text.length > 0) onData(text);
      }
    } finally {
      closeSync(fd);
    }
  };
  while (!signal.aborted) {
    poll();
    await new Promise<void>((resolve) => {
      const timer = setTimeout(done, intervalMs);
      function done() {
        clearTimeout(timer);
        signal.removeEventListener('abort', done);
        resolve();
      }
      signal.addEventListener('abort', done, { once: true });
    });
  }
}
