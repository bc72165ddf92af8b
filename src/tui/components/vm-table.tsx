// The VM table: one row per VM, the selected row in inverse, a window that follows the selection.
import { Box, Text } from 'ink';
import type { VmView } from '../../core/models.js';
import { useTheme } from '../context.js';
import { TABLE_COLUMNS, columnWidths, fit, joinCells, vmCells } from '../format.js';
import { stateColor } from '../theme.js';

/** First row to show so that row `selected` is in a window of `height` rows. */
export function windowStart(selected: number, count: number, height: number): number {
  if (height <= 0 || count <= height) return 0;
  return Math.min(Math.max(selected - height + 1, 0), count - height);
}

export interface VmTableProps {
  vms: VmView[];
  selected: number;
  busy: Set<string>;
  now: number;
  width: number;
  /** Rows for VMs, not counting the header. */
  height: number;
  isLoaded: boolean;
  filter: string;
}

export function VmTable({ vms, selected, busy, now, width, height, isLoaded, filter }: VmTableProps) {
  const theme = useTheme();
  const rows = vms.map((v) => vmCells(v, now));
  const widths = columnWidths(rows, width);
  const start = windowStart(selected, vms.length, height);
  const shown = vms.slice(start, start + height);
  const empty = !isLoaded ? 'loading…' : filter ? `no VM name contains "${filter}"` : 'no VMs yet: press n to create one';
  return (
    <Box flexDirection="column" width={width} height={height + 1}>
      <Text bold wrap="truncate">
        {fit(`  ${joinCells([...TABLE_COLUMNS], widths)}`, width, false)}
      </Text>
      {shown.length === 0 ? (
        <Text dimColor>{fit(`  ${empty}`, width, false)}</Text>
      ) : (
        shown.map((vm, i) => {
          const row = start + i;
          const isSelected = row === selected;
          const cells = rows[row];
          const mark = busy.has(vm.id) ? '* ' : isSelected ? '› ' : '  ';
          const before = fit(cells[0], widths[0]);
          const gap = '  ';
          const state = fit(cells[1], widths[1]);
          const after = joinCells(cells.slice(2), widths.slice(2));
          const line = `${mark}${before}${gap}${state}${gap}${after}`;
          if (isSelected) {
            return (
              <Text key={vm.id} inverse wrap="truncate">
                {fit(line, width)}
              </Text>
            );
          }
          return (
            <Text key={vm.id} wrap="truncate">
              {mark}
              {before}
              {gap}
              <Text color={stateColor(theme, vm.state)} dimColor={vm.state === 'stopped'}>
                {state}
              </Text>
              {gap}
              {after}
            </Text>
          );
        })
      )}
    </Box>
  );
}
