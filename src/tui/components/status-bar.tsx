// The bottom lines: operations in progress and the last outcome, the filter being typed, keys.
import { Box, Text } from 'ink';
import { useTheme } from '../context.js';
import { fit } from '../format.js';
import type { StatusLine } from '../state/ui.js';

export const STATUS_LINES = 2;

export function StatusArea({ lines, width }: { lines: StatusLine[]; width: number }) {
  const theme = useTheme();
  const color = { progress: theme.warn, error: theme.error, ok: theme.ok, info: undefined } as const;
  const mark = { progress: '…', error: '✗', ok: '✓', info: '·' } as const;
  const shown = lines.slice(-STATUS_LINES);
  return (
    <Box flexDirection="column" width={width} height={STATUS_LINES}>
      {shown.map((l, i) => (
        <Text key={i} color={color[l.tone]} bold={l.tone === 'error'} wrap="truncate">
          {fit(`${mark[l.tone]} ${l.text}`, width, false)}
        </Text>
      ))}
    </Box>
  );
}

export function FilterLine({ filter, width }: { filter: string; width: number }) {
  const theme = useTheme();
  return (
    <Text wrap="truncate">
      <Text bold color={theme.accent}>
        /
      </Text>
      {fit(`${filter}▏`, width - 1, false)}
      <Text dimColor>{'  Enter keep  Esc clear'}</Text>
    </Text>
  );
}

/** Key hints that fit in width, in order, with "? help" last when the screen has help. */
export function hintLine(hints: [string, string][], width: number, hasHelp = true): string {
  const help = hasHelp ? '? help' : '';
  let line = '';
  for (const [k, what] of hints) {
    const next = `${line}${line ? '  ' : ''}${k} ${what}`;
    if (next.length + (help ? help.length + 2 : 0) > width) break;
    line = next;
  }
  return [line, help].filter(Boolean).join('  ');
}

export function KeyHints({ hints, width, hasHelp }: { hints: [string, string][]; width: number; hasHelp: boolean }) {
  return (
    <Text dimColor wrap="truncate">
      {hintLine(hints, width, hasHelp)}
    </Text>
  );
}
