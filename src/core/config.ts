// Settings: config.json overlaid by BANGER_* environment variables (the environment wins).
// Validated by hand (the CLI loads this too and must stay light).
import { readFileSync } from 'node:fs';
import { isAbsolute } from 'node:path';
import { InvalidArgumentError } from './errors.js';
import { resolvePaths, vmApiSocket, MAX_SOCKET_PATH, type Paths } from './paths.js';

export type RootfsStrategy = 'auto' | 'dm' | 'copy';

export interface Settings {
  socket: string;
  firecracker: string;
  rootfsStrategy: RootfsStrategy;
  netPool: string;
  uplink: string | null;
  buildId: string | null;
}

const KEYS: Record<keyof Settings, string> = {
  socket: 'BANGER_SOCKET',
  firecracker: 'BANGER_FIRECRACKER',
  rootfsStrategy: 'BANGER_ROOTFS_STRATEGY',
  netPool: 'BANGER_NET_POOL',
  uplink: 'BANGER_UPLINK',
  buildId: 'BANGER_BUILD_ID',
};

export interface LoadedConfig {
  paths: Paths;
  settings: Settings;
}

function readConfigFile(file: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return {};
    throw new InvalidArgumentError(`config ${file}: cannot read it: ${(err as Error).message}; fix its permissions or remove it`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new InvalidArgumentError(`config ${file}: not valid JSON (${(err as Error).message}); fix the file or remove it`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new InvalidArgumentError(`config ${file}: must be a JSON object like {"netPool": "172.16.0.0/16"}`);
  }
  return parsed as Record<string, unknown>;
}

function checkValue(key: keyof Settings, value: string, source: string): void {
  const fail = (why: string) => {
    throw new InvalidArgumentError(`${source}: ${why}`);
  };
  switch (key) {
    case 'socket':
      if (!isAbsolute(value)) fail(`socket path "${value}" must be absolute`);
      if (Buffer.byteLength(value) > MAX_SOCKET_PATH) fail(`socket path is ${Buffer.byteLength(value)} bytes; Unix sockets allow at most ${MAX_SOCKET_PATH}`);
      break;
    case 'rootfsStrategy':
      if (!['auto', 'dm', 'copy'].includes(value)) fail(`rootfs strategy "${value}" is not one of auto, dm, copy`);
      break;
    case 'netPool':
      if (!/^\d{1,3}(\.\d{1,3}){3}\/\d{1,2}$/.test(value)) fail(`net pool "${value}" is not an IPv4 CIDR like 172.16.0.0/16`);
      break;
    case 'uplink':
      if (!/^[A-Za-z0-9_.@-]{1,15}$/.test(value)) fail(`uplink "${value}" is not an interface name`);
      break;
    case 'firecracker':
    case 'buildId':
      if (value.length === 0) fail('must not be empty');
      break;
  }
}

/** Loads and validates settings. Throws InvalidArgumentError naming the file or variable and the fix. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): LoadedConfig {
  const paths = resolvePaths(env);
  const file = readConfigFile(paths.configFile);
  const settings: Settings = {
    socket: paths.socket,
    firecracker: 'firecracker',
    rootfsStrategy: 'auto',
    netPool: '172.16.0.0/16',
    uplink: null,
    buildId: null,
  };
  for (const [k, v] of Object.entries(file)) {
    if (!(k in KEYS)) {
      throw new InvalidArgumentError(`config ${paths.configFile}: unknown setting "${k}"; known settings: ${Object.keys(KEYS).join(', ')}`);
    }
    if (typeof v !== 'string') {
      throw new InvalidArgumentError(`config ${paths.configFile}: "${k}" must be a string`);
    }
    checkValue(k as keyof Settings, v, `config ${paths.configFile}: "${k}"`);
    (settings as unknown as Record<string, string>)[k] = v;
  }
  for (const [k, name] of Object.entries(KEYS) as [keyof Settings, string][]) {
    const v = env[name];
    if (v === undefined || v === '') continue;
    checkValue(k, v, `environment ${name}`);
    (settings as unknown as Record<string, string>)[k] = v;
  }
  paths.socket = settings.socket;
  // Firecracker's API sockets live under the runtime directory: <runtime>/vms/<12 hex>.sock.
  const vmSocket = vmApiSocket(paths, '0'.repeat(12));
  if (Buffer.byteLength(vmSocket) > MAX_SOCKET_PATH) {
    throw new InvalidArgumentError(
      `VM API sockets would be ${Buffer.byteLength(vmSocket)} bytes long (${vmSocket}); Unix sockets allow at most ${MAX_SOCKET_PATH}: set XDG_RUNTIME_DIR to a shorter directory`,
    );
  }
  return { paths, settings };
}
