// Text for the screens: cell fitting, the VM table's column widths, ages and sizes.
import type { VmView } from '../core/models.js';
import { humanAge, humanBytes } from '../cli/output.js';

export { humanAge, humanBytes };

/** Cuts text to width, marking a cut with "…"; pads to width when pad is set. */
export function fit(text: string, width: number, pad = true): string {
  if (width <= 0) return '';
  const chars = [...text];
  const cut = chars.length > width ? chars.slice(0, width - 1).join('') + '…' : text;
  return pad ? cut.padEnd(width) : cut;
}

export const TABLE_COLUMNS = ['NAME', 'STATE', 'IP', 'VCPUS', 'MEMORY', 'IMAGE', 'AGE'] as const;
export type Column = (typeof TABLE_COLUMNS)[number];

/** One table row's cells, in TABLE_COLUMNS order. */
export function vmCells(vm: VmView, now: number): string[] {
  return [vm.name, vm.state, vm.guestIp, String(vm.vcpus), `${vm.memoryMib} MiB`, vm.image, humanAge(vm.createdAt, now)];
}

const GAP = 2;
/** The room each column needs at least; NAME and IMAGE share what is left. */
const MIN: Record<Column, number> = { NAME: 8, STATE: 8, IP: 11, VCPUS: 5, MEMORY: 9, IMAGE: 6, AGE: 4 };

/**
 * Column widths for a table `width` characters wide (including a 2-character selection mark):
 * fixed columns get what their longest cell needs, NAME and IMAGE share the rest, NAME first.
 */
export function columnWidths(rows: string[][], width: number): number[] {
  const need = TABLE_COLUMNS.map((c, i) => Math.max(MIN[c], c.length, ...rows.map((r) => [...(r[i] ?? '')].length)));
  const widths = [...need];
  const total = () => 2 + widths.reduce((a, b) => a + b, 0) + GAP * (widths.length - 1);
  const name = 0;
  const image = 5;
  // Too wide: shrink NAME and IMAGE toward their minimums, the longer one first.
  while (total() > width && (widths[name] > MIN.NAME || widths[image] > MIN.IMAGE)) {
    if (widths[name] - MIN.NAME >= widths[image] - MIN.IMAGE && widths[name] > MIN.NAME) widths[name]--;
    else widths[image]--;
  }
  // Still too wide (a very narrow terminal): IP gives up its spare room too.
  while (total() > width && widths[2] > MIN.IP) widths[2]--;
  return widths;
}

export function joinCells(cells: string[], widths: number[]): string {
  return cells.map((c, i) => (i === cells.length - 1 ? fit(c, widths[i], false) : fit(c, widths[i]))).join(' '.repeat(GAP));
}

/** "512 MiB", "4 GiB" for a MiB count. */
export function mib(n: number): string {
  return humanBytes(n * 1024 * 1024);
}
