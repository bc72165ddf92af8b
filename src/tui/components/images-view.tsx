// The images screen: every image with its size and files; n creates a VM from the selected one.
import { Box, Text } from 'ink';
import type { Image } from '../../core/models.js';
import { fit, humanAge, humanBytes } from '../format.js';
import { windowStart } from './vm-table.js';

export function ImagesView({ images, selected, now, width, height }: { images: Image[]; selected: number; now: number; width: number; height: number }) {
  const nameWidth = Math.max(8, ...images.map((i) => i.name.length));
  const head = `  ${fit('NAME', nameWidth)}  ${fit('ROOTFS', 9)}  ${fit('AGE', 4)}  KERNEL`;
  const rows = Math.max(height - 1, 0);
  const start = windowStart(selected, images.length, rows);
  return (
    <Box flexDirection="column" width={width} height={height} overflow="hidden">
      <Text bold wrap="truncate">
        {head}
      </Text>
      {images.length === 0 ? (
        <Text dimColor>{'  no images yet: add one with banger image add NAME --kernel PATH --rootfs PATH'}</Text>
      ) : (
        images.slice(start, start + rows).map((image, i) => {
          const isSelected = start + i === selected;
          const line = `${isSelected ? '› ' : '  '}${fit(image.name, nameWidth)}  ${fit(humanBytes(image.rootfsSizeBytes), 9)}  ${fit(humanAge(image.createdAt, now), 4)}  ${image.kernelPath}`;
          return (
            <Text key={image.id} inverse={isSelected} wrap="truncate">
              {fit(line, width, isSelected)}
            </Text>
          );
        })
      )}
    </Box>
  );
}
