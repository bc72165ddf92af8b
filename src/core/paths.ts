// Where banger keeps its files (SPEC section 2), from XDG variables with the usual defaults.
import { join } from 'node:path';
import { homedir } from 'node:os';

export interface Paths {
  stateDir: string; // $XDG_STATE_HOME/banger
  dataDir: string; // $XDG_DATA_HOME/banger
  configFile: string; // $XDG_CONFIG_HOME/banger/config.json
  runtimeDir: string; // $XDG_RUNTIME_DIR/banger or /tmp/banger-<uid>
  database: string;
  daemonLog: string;
  vmsDir: string; // per-VM files: vms/<id>/
  imagesDir: string; // images/<id>/
  sshKey: string;
  socket: string; // daemon socket (BANGER_SOCKET or config may override)
  vmSocketsDir: string; // Firecracker API sockets: <runtime>/vms/<id>.sock
}

/** Longest Unix socket path: sun_path is 108 bytes including the NUL. */
export const MAX_SOCKET_PATH = 107;

export function resolvePaths(env: NodeJS.ProcessEnv = process.env, uid = process.getuid?.() ?? 0): Paths {
  const home = env.HOME || homedir();
  const state = join(env.XDG_STATE_HOME || join(home, '.local/state'), 'banger');
  const data = join(env.XDG_DATA_HOME || join(home, '.local/share'), 'banger');
  const config = join(env.XDG_CONFIG_HOME || join(home, '.config'), 'banger');
  const runtime = env.XDG_RUNTIME_DIR ? join(env.XDG_RUNTIME_DIR, 'banger') : `/tmp/banger-${uid}`;
  return {
    stateDir: state,
    dataDir: data,
    configFile: join(config, 'config.json'),
    runtimeDir: runtime,
    database: join(state, 'banger.db'),
    daemonLog: join(state, 'bangerd.log'),
    vmsDir: join(state, 'vms'),
    imagesDir: join(data, 'images'),
    sshKey: join(data, 'ssh', 'id_ed25519'),
    socket: join(runtime, 'bangerd.sock'),
    vmSocketsDir: join(runtime, 'vms'),
  };
}

export function vmDir(paths: Paths, vmId: string): string {
  return join(paths.vmsDir, vmId);
}

export function vmApiSocket(paths: Paths, vmId: string): string {
  return join(paths.vmSocketsDir, `${vmId}.sock`);
}

export function imageDir(paths: Paths, imageId: string): string {
  return join(paths.imagesDir, imageId);
}
