// banger tui: loaded with import() only when `banger tui` runs.
export async function runTui(): Promise<void> {
  throw new Error('banger tui is not implemented yet');
}
