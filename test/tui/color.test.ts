// Colours: basic hues with a theme, none at all under NO_COLOR. Ink's colour library decides
// whether to emit colour when it loads, so colour is forced before anything imports it.
import { describe, it, expect, beforeAll, afterEach } from 'vitest';

process.env.FORCE_COLOR = '1';

type Modules = {
  render: typeof import('./render.js');
  fake: typeof import('./fake-client.js');
  theme: typeof import('../../src/tui/theme.js');
};
let m: Modules;
let unmount: (() => void) | null = null;

beforeAll(async () => {
  m = { render: await import('./render.js'), fake: await import('./fake-client.js'), theme: await import('../../src/tui/theme.js') };
});
afterEach(() => unmount?.());

/** SGR foreground or background colour codes: 30-37, 40-47, 90-97, 100-107, 38;… and 48;…. */
const COLOUR = /\x1b\[(?:3[0-7]|4[0-7]|9[0-7]|10[0-7]|38;|48;)[0-9;]*m/;

async function frameWith(theme: import('../../src/tui/theme.js').Theme): Promise<string> {
  const client = new m.fake.FakeTuiClient();
  client.vms = [m.fake.makeVm('dev', { state: 'running' }), m.fake.makeVm('bad', { state: 'error', lastError: 'boom' })];
  const app = m.render.renderApp(client, { theme });
  unmount = app.unmount;
  return app.waitForFrame((f) => f.includes('dev') && f.includes('── bad ──'), 'the table');
}

describe('colours', () => {
  it('colours states and errors with the theme', async () => {
    const frame = await frameWith(m.theme.COLOR_THEME);
    expect(frame).toMatch(COLOUR);
    // running is green (32), the error red (31)
    expect(frame).toContain('\x1b[32m');
    expect(frame).toContain('\x1b[31m');
  });

  it('emits no colour with the NO_COLOR theme, only bold, dim and inverse', async () => {
    const frame = await frameWith(m.theme.themeFor({ NO_COLOR: '1' }));
    expect(frame).not.toMatch(COLOUR);
    expect(frame).toContain('\x1b[1m');
    expect(frame).toContain('\x1b[7m');
  });
});
