// Rollback and teardown share this: run every undo in reverse, collect every failure.

export interface Undo {
  /** Step name, used in error messages ("snapshot.dm"). */
  name: string;
  run: () => Promise<void>;
}

/**
 * Runs undos last-first. Every undo runs even when an earlier one fails; all failures are
 * thrown together as one AggregateError whose message names each failed step.
 */
export async function unwind(undos: Undo[], what = 'teardown'): Promise<void> {
  const errors: Error[] = [];
  for (const undo of [...undos].reverse()) {
    try {
      await undo.run();
    } catch (err) {
      const e = err instanceof Error ? err : new Error(String(err));
      errors.push(new Error(`${undo.name}: ${e.message}`, { cause: e }));
    }
  }
  if (errors.length > 0) {
    throw new AggregateError(errors, `${what} failed: ${errors.map((e) => e.message).join('; ')}`);
  }
}

/**
 * Runs a setup whose steps register undos as they go. On failure, unwinds what was registered
 * and rethrows the original error; if the rollback fails too, both are reported in one AggregateError.
 */
export async function withRollback<T>(what: string, setup: (onUndo: (undo: Undo) => void) => Promise<T>): Promise<T> {
  const undos: Undo[] = [];
  try {
    return await setup((u) => undos.push(u));
  } catch (err) {
    try {
      await unwind(undos, `${what} rollback`);
    } catch (rollbackErr) {
      const original = err instanceof Error ? err : new Error(String(err));
      throw new AggregateError([original, rollbackErr as Error], `${original.message}; and ${(rollbackErr as Error).message}`, { cause: original });
    }
    throw err;
  }
}
