// Version and build id, embedded by scripts/build.mjs; BANGER_BUILD_ID overrides the build id.
declare const __BANGER_BUILD_ID__: string | undefined;
declare const __BANGER_VERSION__: string | undefined;

export const VERSION: string = typeof __BANGER_VERSION__ === 'string' ? __BANGER_VERSION__ : '0.0.0-dev';

export function buildId(env: NodeJS.ProcessEnv = process.env): string {
  if (env.BANGER_BUILD_ID) return env.BANGER_BUILD_ID;
  return typeof __BANGER_BUILD_ID__ === 'string' ? __BANGER_BUILD_ID__ : 'dev';
}
