// The help overlay: every key, by screen.
import { Box, Text } from 'ink';
import { useTheme } from '../context.js';
import { fit } from '../format.js';

export const HELP: [string, [string, string][]][] = [
  [
    'VM table',
    [
      ['↑ ↓ j k', 'select a VM (PgUp PgDn g G: page, first, last)'],
      ['s', 'start the VM'],
      ['x  X', 'stop it (X: kill at once)'],
      ['r', 'restart it'],
      ['d', 'delete it and its disk (asks first)'],
      ['e', 'ssh into it (the TUI comes back when ssh exits)'],
      ['l', "follow its serial console"],
      ['n', 'create a VM'],
      ['i', 'images'],
      ['/', 'filter by name (Enter keeps it, Esc clears it)'],
      ['Esc', 'dismiss the message, clear the filter'],
      ['q', 'quit (VMs keep running)'],
    ],
  ],
  [
    'Other screens',
    [
      ['Esc  q', 'back to the table'],
      ['Tab ↑ ↓', 'create form: next / previous field; ← → pick; Enter creates'],
      ['f  g', 'logs: follow / go to the top'],
    ],
  ],
];

export function HelpOverlay({ width, height }: { width: number; height: number }) {
  const theme = useTheme();
  const keyWidth = 9;
  return (
    <Box flexDirection="column" width={width} height={height} overflow="hidden">
      <Text bold color={theme.accent}>
        keys (any key closes this)
      </Text>
      {HELP.map(([section, keys]) => (
        <Box key={section} flexDirection="column">
          <Text bold>{section}</Text>
          {keys.map(([k, what]) => (
            <Text key={k} wrap="truncate">
              <Text bold>{`  ${fit(k, keyWidth)}`}</Text>
              {what}
            </Text>
          ))}
        </Box>
      ))}
    </Box>
  );
}
