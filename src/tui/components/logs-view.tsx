// The logs screen: a VM's serial console, following new output unless scrolled up.
import { Box, Text } from 'ink';
import { useTheme } from '../context.js';
import { visibleLogLines, type LogsState } from '../state/logs.js';

export function LogsView({ name, logs, width, height }: { name: string; logs: LogsState; width: number; height: number }) {
  const theme = useTheme();
  const room = Math.max(height - 1, 0);
  const lines = visibleLogLines(logs, room);
  const where = logs.scroll === 0 ? 'following' : `${logs.scroll} lines up (f follows)`;
  return (
    <Box flexDirection="column" width={width} height={height} overflow="hidden">
      <Text wrap="truncate">
        <Text bold>{`console of ${name}`}</Text>
        <Text dimColor>{`  ${where}`}</Text>
      </Text>
      {logs.error ? (
        <Text color={theme.error} wrap="truncate">
          {`cannot read the console: ${logs.error}`}
        </Text>
      ) : lines.length === 0 ? (
        <Text dimColor>the console is empty: the VM has not printed anything yet</Text>
      ) : (
        lines.map((line, i) => (
          <Text key={i} wrap="truncate">
            {line || ' '}
          </Text>
        ))
      )}
    </Box>
  );
}
