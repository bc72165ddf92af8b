// Limits of a VM spec, shared by the CLI flag parsers and the daemon schemas.
export const MAX_VCPUS = 32;
export const MIN_MEMORY_MIB = 64;
export const MAX_MEMORY_MIB = 256 * 1024;
