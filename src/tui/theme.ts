// Colours by meaning. Only the basic ANSI hues, which terminals adapt to dark and light
// backgrounds; never white or black. NO_COLOR (https://no-color.org) turns every hue off,
// leaving bold, dim and inverse.
import type { VmState } from '../core/models.js';

export interface Theme {
  ok: string | undefined;
  warn: string | undefined;
  error: string | undefined;
  accent: string | undefined;
}

export const COLOR_THEME: Theme = { ok: 'green', warn: 'yellow', error: 'red', accent: 'cyan' };
export const NO_COLOR_THEME: Theme = { ok: undefined, warn: undefined, error: undefined, accent: undefined };

/** The theme for an environment: no colour when NO_COLOR is set to anything but "". */
export function themeFor(env: NodeJS.ProcessEnv): Theme {
  return env.NO_COLOR ? NO_COLOR_THEME : COLOR_THEME;
}

/** The hue of a VM state, or undefined for plain text (stopped VMs are dimmed instead). */
export function stateColor(theme: Theme, state: VmState): string | undefined {
  switch (state) {
    case 'running':
      return theme.ok;
    case 'error':
      return theme.error;
    case 'creating':
    case 'starting':
    case 'stopping':
      return theme.warn;
    case 'stopped':
      return undefined;
  }
}
