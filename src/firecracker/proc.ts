// What /proc says about Firecracker processes: command lines, start times, and which of them
// are banger's (for adoption after a daemon restart, and for gc).
import { readFileSync, readdirSync } from 'node:fs';

/**
 * The launcher's wrapper script: it writes its own pid to the file named by $0, then execs the
 * rest of its arguments, so the pid file names the process that becomes Firecracker, even through
 * sudo. A process whose command line holds this script is a wrapper (sudo, or sh before its exec),
 * never Firecracker itself.
 */
export const PIDFILE_WRAPPER_SCRIPT = 'echo $$ > "$0"; exec "$@"';

export interface FirecrackerProcess {
  pid: number;
  vmId: string;
  startTime: string;
  apiSock: string;
}

/** argv of a process, from /proc/<pid>/cmdline (NUL separated); null when there is no such process. */
export function readCmdline(pid: number, procRoot = '/proc'): string[] | null {
  let raw: string;
  try {
    raw = readFileSync(`${procRoot}/${pid}/cmdline`, 'utf8');
  } catch {
    return null;
  }
  const parts = raw.split('\0');
  if (parts.length > 0 && parts[parts.length - 1] === '') parts.pop();
  return parts;
}

/**
 * Field 22 (starttime, clock ticks since boot) of a /proc/<pid>/stat line. The comm field (2) is
 * in parentheses and may hold spaces and parentheses itself, so fields are counted from the last ")":
 * "4242 (fc (x) y) S 1 4242 4242 0 -1 4194560 ... 0 0 20 0 1 0 987654 ..." -> "987654".
 */
export function parseStatStartTime(stat: string): string | null {
  const close = stat.lastIndexOf(')');
  if (close < 0) return null;
  // After ") " come fields 3 (state), 4 (ppid), ...; field 22 is the 20th of them.
  const rest = stat
    .slice(close + 1)
    .trim()
    .split(/\s+/);
  const value = rest[22 - 3];
  return value !== undefined && /^\d+$/.test(value) ? value : null;
}

/** Start time of a process (field 22 of /proc/<pid>/stat), null when there is no such process. */
export function readStartTime(pid: number, procRoot = '/proc'): string | null {
  try {
    return parseStatStartTime(readFileSync(`${procRoot}/${pid}/stat`, 'utf8'));
  } catch {
    return null;
  }
}

/** The values of "--api-sock X --id Y" in an argv, when they appear in that order, adjacent. */
export function parseFirecrackerArgs(argv: string[]): { apiSock: string; vmId: string } | null {
  for (let i = 0; i + 3 < argv.length; i++) {
    if (argv[i] === '--api-sock' && argv[i + 2] === '--id') return { apiSock: argv[i + 1], vmId: argv[i + 3] };
  }
  return null;
}

/** Whether an argv holds "--id" directly followed by vmId. */
export function hasIdArg(argv: string[], vmId: string): boolean {
  for (let i = 0; i + 1 < argv.length; i++) if (argv[i] === '--id' && argv[i + 1] === vmId) return true;
  return false;
}

/**
 * Whether pid is still the process recorded for vmId: alive (a zombie has an empty command line),
 * started at startTime (so not a reused pid), and launched with --id vmId.
 */
export function isSameProcess(pid: number, startTime: string, vmId: string, procRoot = '/proc'): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  if (readStartTime(pid, procRoot) !== startTime) return false;
  const argv = readCmdline(pid, procRoot);
  if (argv === null) return false;
  // The command line reads empty for a zombie, and for an instant while the process execs (a
  // wrapper script exec'ing Firecracker): the same start time and a live state mean the same process.
  if (argv.length === 0) return !isZombie(pid, procRoot);
  return hasIdArg(argv, vmId);
}

/** True while pid runs: it exists and is no zombie (exited, waiting to be reaped by a parent). */
export function isRunning(pid: number, procRoot = '/proc'): boolean {
  return !isZombie(pid, procRoot);
}

/** Whether /proc/<pid>/stat shows state Z (exited, not yet reaped), or no such process. */
export function isZombie(pid: number, procRoot = '/proc'): boolean {
  try {
    const stat = readFileSync(`${procRoot}/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 1).trim().split(/\s+/)[0];
    return state === 'Z' || state === 'X';
  } catch {
    return true;
  }
}

/** Every running process launched as "<firecracker> --api-sock X --id Y", wrappers excluded. */
export function findFirecrackerProcesses(procRoot = '/proc'): FirecrackerProcess[] {
  const found: FirecrackerProcess[] = [];
  let names: string[];
  try {
    names = readdirSync(procRoot);
  } catch {
    return found;
  }
  for (const name of names) {
    if (!/^\d+$/.test(name)) continue;
    const pid = Number(name);
    const argv = readCmdline(pid, procRoot);
    if (!argv || argv.includes(PIDFILE_WRAPPER_SCRIPT)) continue;
    const args = parseFirecrackerArgs(argv);
    if (!args) continue;
    const startTime = readStartTime(pid, procRoot);
    if (startTime === null) continue;
    found.push({ pid, vmId: args.vmId, startTime, apiSock: args.apiSock });
  }
  return found.sort((a, b) => a.pid - b.pid);
}
