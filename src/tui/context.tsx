// The client and the theme, handed to hooks and views through React context.
import { createContext, useContext, type ReactNode } from 'react';
import type { TuiClient } from './client.js';
import { COLOR_THEME, type Theme } from './theme.js';

const ClientContext = createContext<TuiClient | null>(null);
const ThemeContext = createContext<Theme>(COLOR_THEME);

export function TuiProvider({ client, theme, children }: { client: TuiClient; theme: Theme; children: ReactNode }) {
  return (
    <ClientContext.Provider value={client}>
      <ThemeContext.Provider value={theme}>{children}</ThemeContext.Provider>
    </ClientContext.Provider>
  );
}

export function useClient(): TuiClient {
  const client = useContext(ClientContext);
  if (!client) throw new Error('useClient outside TuiProvider');
  return client;
}

export function useTheme(): Theme {
  return useContext(ThemeContext);
}
