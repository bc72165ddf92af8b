// The top line: what is shown and how the daemon connection is; a banner while reconnecting.
import { Box, Text } from 'ink';
import type { VmView } from '../../core/models.js';
import { useTheme } from '../context.js';
import { fit } from '../format.js';
import type { Connection } from '../state/vms.js';

export function Header({ vms, shown, filter, connection, width }: { vms: VmView[]; shown: number; filter: string; connection: Connection; width: number }) {
  const theme = useTheme();
  const running = vms.filter((v) => v.state === 'running').length;
  const count = filter ? `${shown} of ${vms.length} VMs` : `${vms.length} VM${vms.length === 1 ? '' : 's'}`;
  const status = connection.status === 'live' ? 'live' : connection.status === 'connecting' ? 'connecting…' : 'reconnecting…';
  const rest = `  ${count}, ${running} running${filter ? `  filter: ${filter}` : ''}`;
  return (
    <Box width={width}>
      <Box flexGrow={1} flexShrink={1} overflow="hidden">
        <Text wrap="truncate">
          <Text bold color={theme.accent}>
            banger
          </Text>
          {rest}
        </Text>
      </Box>
      <Box flexShrink={0} marginLeft={1}>
        <Text color={connection.status === 'live' ? theme.ok : theme.warn}>{`● ${status}`}</Text>
      </Box>
    </Box>
  );
}

export function ReconnectBanner({ connection, now, width }: { connection: Connection; now: number; width: number }) {
  const theme = useTheme();
  if (connection.status !== 'reconnecting') return null;
  const wait = Math.max(0, Math.ceil((connection.retryAt - now) / 1000));
  const text = `daemon connection lost, reconnecting (attempt ${connection.attempt}${wait > 0 ? `, next in ${wait}s` : ''}): ${connection.error}`;
  return (
    <Text bold color={theme.warn} wrap="truncate">
      {fit(text, width, false)}
    </Text>
  );
}
