// Asks before a VM and its disk are deleted.
import { Box, Text } from 'ink';
import { useTheme } from '../context.js';

export function ConfirmDelete({ name, isRunning, width }: { name: string; isRunning: boolean; width: number }) {
  const theme = useTheme();
  return (
    <Box flexDirection="column" width={width} borderStyle="round" borderColor={theme.error} paddingX={1}>
      <Text bold wrap="wrap">{`Delete VM ${name} and its disk?`}</Text>
      {isRunning ? <Text wrap="wrap">{`${name} is running: it will be stopped first.`}</Text> : null}
      <Text>
        <Text bold color={theme.error}>
          y
        </Text>
        {' delete   '}
        <Text bold>n</Text>
        {' / Esc keep it'}
      </Text>
    </Box>
  );
}
