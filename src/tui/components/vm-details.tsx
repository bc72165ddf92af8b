// The selected VM: its spec, host resources, last error and the console's last lines.
import { Box, Text } from 'ink';
import type { VmView } from '../../core/models.js';
import { useTheme } from '../context.js';
import { fit, humanAge, humanBytes, mib } from '../format.js';
import { stateColor } from '../theme.js';

const CELL = 26;

/** The label/value pairs shown for a VM. */
export function detailFields(vm: VmView, now: number): [string, string][] {
  return [
    ['state', vm.state],
    ['pid', vm.pid === null ? '-' : String(vm.pid)],
    ['image', vm.image],
    ['vcpus', String(vm.vcpus)],
    ['memory', mib(vm.memoryMib)],
    ['disk', humanBytes(vm.diskSizeBytes)],
    ['ip', vm.guestIp],
    ['host', vm.hostIp],
    ['nat', vm.nat ? 'yes' : 'no'],
    ['tap', vm.tap],
    ['mac', vm.mac],
    ['age', humanAge(vm.createdAt, now)],
  ];
}

/** Lines the details pane needs above the console for this width. */
export function detailsHeaderLines(vm: VmView, width: number): number {
  const perLine = Math.max(1, Math.floor(width / CELL));
  return 1 + Math.ceil(12 / perLine) + (vm.lastError ? 1 : 0) + 1;
}

export interface VmDetailsProps {
  vm: VmView | null;
  consoleLines: string[];
  now: number;
  width: number;
  height: number;
}

export function VmDetails({ vm, consoleLines, now, width, height }: VmDetailsProps) {
  const theme = useTheme();
  if (height <= 0) return null;
  if (!vm) {
    return (
      <Box width={width} height={height}>
        <Text dimColor>{fit('─'.repeat(width), width, false)}</Text>
      </Box>
    );
  }
  const perLine = Math.max(1, Math.floor(width / CELL));
  const cell = Math.floor(width / perLine);
  const fields = detailFields(vm, now);
  const lines: [string, string][][] = [];
  for (let i = 0; i < fields.length; i += perLine) lines.push(fields.slice(i, i + perLine));
  const title = `── ${vm.name} ── ${vm.id} `;
  const room = Math.max(height - detailsHeaderLines(vm, width), 0);
  const shownConsole = consoleLines.slice(-room);
  return (
    <Box flexDirection="column" width={width} height={height} overflow="hidden">
      <Text wrap="truncate">
        <Text bold>{title}</Text>
        <Text dimColor>{'─'.repeat(Math.max(width - title.length, 0))}</Text>
      </Text>
      {lines.map((pairs, i) => (
        <Text key={i} wrap="truncate">
          {pairs.map(([label, value]) => (
            <Text key={label}>
              <Text dimColor>{`${label} `}</Text>
              <Text color={label === 'state' ? stateColor(theme, vm.state) : undefined} bold={label === 'state'}>
                {fit(value, Math.max(cell - label.length - 1, 1))}
              </Text>
            </Text>
          ))}
        </Text>
      ))}
      {vm.lastError ? (
        <Text color={theme.error} wrap="truncate">
          {`error ${vm.lastError}`}
        </Text>
      ) : null}
      <Text dimColor wrap="truncate">
        {consoleLines.length ? 'console (l for the full log)' : 'console: nothing yet'}
      </Text>
      {shownConsole.map((line, i) => (
        <Text key={i} wrap="truncate">
          {line || ' '}
        </Text>
      ))}
    </Box>
  );
}
