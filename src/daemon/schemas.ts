// Strict request schemas for every API method: a wrong type, a missing or an unknown field is
// invalid_argument before anything happens.
import { z } from 'zod';
import { NAME_PATTERN } from '../core/models.js';

const ref = z.string().min(1).max(128);
const name = z.string().regex(NAME_PATTERN, 'must match ^[a-z0-9][a-z0-9-]{0,62}$ (lowercase letters, digits, dashes; at most 63)');
const absPath = z.string().min(1).max(4096).refine((p) => p.startsWith('/'), 'must be an absolute path');
const empty = z.strictObject({});

import { MAX_VCPUS, MIN_MEMORY_MIB, MAX_MEMORY_MIB } from '../core/limits.js';
export const MAX_DISK_BYTES = 2 ** 40 * 16; // 16 TiB

export const schemas = {
  'vm.create': z.strictObject({
    name: name.optional(),
    image: ref,
    vcpus: z.number().int().min(1).max(MAX_VCPUS).optional(),
    memoryMib: z.number().int().min(MIN_MEMORY_MIB).max(MAX_MEMORY_MIB).optional(),
    diskSizeBytes: z.number().int().positive().max(MAX_DISK_BYTES).optional(),
    nat: z.boolean().optional(),
    start: z.boolean().optional(),
    waitSsh: z.boolean().optional(),
    waitSshTimeoutSeconds: z.number().int().min(1).max(3600).optional(),
  }),
  'vm.start': z.strictObject({ vm: ref }),
  'vm.restart': z.strictObject({ vm: ref, timeoutSeconds: z.number().min(0).max(3600).optional() }),
  'vm.stop': z.strictObject({ vm: ref, timeoutSeconds: z.number().min(0).max(3600).optional(), force: z.boolean().optional() }),
  'vm.delete': z.strictObject({ vm: ref, force: z.boolean().optional() }),
  'vm.list': empty,
  'vm.get': z.strictObject({ vm: ref }),
  'image.add': z.strictObject({
    name,
    kernel: absPath,
    rootfs: absPath,
    initrd: absPath.optional(),
    bootArgs: z.string().max(2048).optional(),
  }),
  'image.build': z.strictObject({
    name,
    kernel: absPath.optional(),
    initrd: absPath.optional(),
    suite: z.string().regex(/^[a-z]+$/, 'must be a Debian suite name like bookworm').optional(),
    sizeBytes: z.number().int().min(256 * 1024 * 1024).max(MAX_DISK_BYTES).optional(),
    packages: z.array(z.string().regex(/^[a-z0-9][a-z0-9+.-]*$/, 'must be a Debian package name')).max(200).optional(),
    debianKernel: z.boolean().optional(),
  }),
  'image.list': empty,
  'image.get': z.strictObject({ image: ref }),
  'image.delete': z.strictObject({ image: ref }),
  'daemon.info': empty,
  'daemon.shutdown': empty,
  'host.doctor': empty,
  'host.gc': z.strictObject({ dryRun: z.boolean().optional() }),
} as const;

export type Method = keyof typeof schemas;
export type Params<M extends Method> = z.infer<(typeof schemas)[M]>;
export const METHODS = Object.keys(schemas) as Method[];

/** One line per problem: "vcpus: Too big: expected number to be <=32". */
export function describeZodError(err: z.ZodError): string {
  return err.issues
    .map((i) => {
      const where = i.path.length ? i.path.join('.') : 'body';
      if (i.code === 'unrecognized_keys') return `${where}: unknown field${i.keys.length > 1 ? 's' : ''} ${i.keys.map((k) => `"${k}"`).join(', ')}`;
      return `${where}: ${i.message}`;
    })
    .join('; ');
}
