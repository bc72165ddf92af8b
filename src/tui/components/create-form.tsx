// The create-VM form: one line per field with its hint, and its error under it once shown.
import { Box, Text } from 'ink';
import type { Image } from '../../core/models.js';
import { MAX_MEMORY_MIB, MAX_VCPUS, MIN_MEMORY_MIB } from '../../core/limits.js';
import { useTheme } from '../context.js';
import { fit, humanBytes } from '../format.js';
import type { FieldName, FormState } from '../state/form.js';

export interface CreateFormProps {
  form: FormState;
  images: Image[];
  errors: Partial<Record<FieldName, string>>;
  width: number;
  height: number;
}

const LABELS: Record<FieldName, string> = { name: 'name', image: 'image', vcpus: 'vCPUs', memory: 'memory', disk: 'disk size', nat: 'NAT', start: 'start' };

export function CreateForm({ form, images, errors, width, height }: CreateFormProps) {
  const theme = useTheme();
  const image = images[form.imageIndex] as Image | undefined;
  const rows: [FieldName, string, string][] = [
    ['name', form.text.name, 'empty: a generated name'],
    ['image', image ? `‹ ${image.name} ›` : 'no images', images.length > 1 ? `← → pick (${form.imageIndex + 1} of ${images.length})` : ''],
    ['vcpus', form.text.vcpus, `1 to ${MAX_VCPUS}`],
    ['memory', form.text.memory, `MiB, ${MIN_MEMORY_MIB} to ${MAX_MEMORY_MIB}`],
    ['disk', form.text.disk, `K/M/G; empty: the image's ${image ? humanBytes(image.rootfsSizeBytes) : 'size'}`],
    ['nat', form.toggles.nat ? '[x] yes' : '[ ] no', 'outbound NAT (space toggles)'],
    ['start', form.toggles.start ? '[x] yes' : '[ ] no', 'start it once created'],
  ];
  const valueWidth = Math.min(28, Math.max(width - 14 - 20, 10));
  return (
    <Box flexDirection="column" width={width} height={height} overflow="hidden">
      <Text bold color={theme.accent}>
        create a VM
      </Text>
      {rows.map(([field, value, hint]) => {
        const isFocused = form.focus === field;
        const isText = field === 'name' || field === 'vcpus' || field === 'memory' || field === 'disk';
        const shown = isText && isFocused ? `${value}▏` : value;
        return (
          <Box key={field} flexDirection="column">
            <Text wrap="truncate">
              <Text bold={isFocused} color={isFocused ? theme.accent : undefined}>
                {`${isFocused ? '›' : ' '} ${fit(LABELS[field], 10)} `}
              </Text>
              <Text underline={isText}>{fit(shown, valueWidth)}</Text>
              <Text dimColor>{`  ${hint}`}</Text>
            </Text>
            {errors[field] ? (
              <Text color={theme.error} wrap="truncate">
                {`             ✗ ${errors[field]}`}
              </Text>
            ) : null}
          </Box>
        );
      })}
      <Text dimColor wrap="truncate">
        {'  Enter create   Tab/↑↓ move   Esc cancel'}
      </Text>
    </Box>
  );
}
