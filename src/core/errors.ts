// The error vocabulary shared by every layer. Each maps to one API error code.

export type ErrorCode =
  | 'invalid_argument'
  | 'not_found'
  | 'already_exists'
  | 'failed_precondition'
  | 'host_command_failed'
  | 'internal';

export class BangerError extends Error {
  readonly code: ErrorCode = 'internal';
  details: unknown;
  constructor(message: string, options?: { cause?: unknown; details?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.details = options?.details;
  }
}

export class InvalidArgumentError extends BangerError {
  override readonly code = 'invalid_argument';
}
export class NotFoundError extends BangerError {
  override readonly code = 'not_found';
}
export class AlreadyExistsError extends BangerError {
  override readonly code = 'already_exists';
}
export class FailedPreconditionError extends BangerError {
  override readonly code = 'failed_precondition';
}
export class InternalError extends BangerError {
  override readonly code = 'internal';
}

/** A host tool exited non-zero, timed out or could not be started. Shaped like execa's error. */
export class HostCommandError extends BangerError {
  override readonly code = 'host_command_failed';
  readonly command: string;
  readonly argv: string[];
  readonly exitCode: number | null;
  readonly signal: string | null;
  readonly stdout: string;
  readonly stderr: string;
  readonly timedOut: boolean;
  readonly shortMessage: string;
  constructor(init: {
    argv: string[];
    exitCode: number | null;
    signal?: string | null;
    stdout?: string;
    stderr?: string;
    timedOut?: boolean;
    cause?: unknown;
  }) {
    const command = init.argv.join(' ');
    const stderr = (init.stderr ?? '').trim();
    const lastLine = stderr.split('\n').filter(Boolean).pop() ?? '';
    const how = init.timedOut
      ? 'timed out'
      : init.signal
        ? `was killed by ${init.signal}`
        : init.exitCode === null
          ? `could not start${init.cause instanceof Error ? `: ${init.cause.message}` : ''}`
          : `exited ${init.exitCode}`;
    const shortMessage = `${command} ${how}${lastLine ? `: ${lastLine}` : ''}`;
    super(shortMessage, { cause: init.cause, details: { command, exitCode: init.exitCode, stderr } });
    this.command = command;
    this.argv = init.argv;
    this.exitCode = init.exitCode;
    this.signal = init.signal ?? null;
    this.stdout = init.stdout ?? '';
    this.stderr = init.stderr ?? '';
    this.timedOut = init.timedOut ?? false;
    this.shortMessage = shortMessage;
  }
}

/**
 * Prefix an error's message with what was being done, keeping it as the cause and keeping its
 * kind: a wrapped FailedPreconditionError is still one; a wrapped HostCommandError keeps its code.
 */
export function wrapError(context: string, err: unknown): BangerError {
  let code: ErrorCode = 'internal';
  if (err instanceof BangerError) code = err.code;
  else if (err instanceof AggregateError) {
    const first = err.errors.find((x: unknown) => x instanceof BangerError) as BangerError | undefined;
    code = first?.code ?? 'internal';
  }
  const options = { cause: err, details: err instanceof BangerError ? err.details : undefined };
  const message = `${context}: ${errorMessage(err)}`;
  switch (code) {
    case 'invalid_argument':
      return new InvalidArgumentError(message, options);
    case 'not_found':
      return new NotFoundError(message, options);
    case 'already_exists':
      return new AlreadyExistsError(message, options);
    case 'failed_precondition':
      return new FailedPreconditionError(message, options);
    case 'internal':
      return new InternalError(message, options);
    default: {
      const e = new BangerError(message, options);
      Object.defineProperty(e, 'code', { value: code, enumerable: true });
      return e;
    }
  }
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Messages of an error and its causes, outermost first (for --verbose). */
export function causeChain(err: unknown): string[] {
  const out: string[] = [];
  let cur: unknown = err;
  const seen = new Set<unknown>();
  while (cur !== undefined && cur !== null && !seen.has(cur)) {
    seen.add(cur);
    if (cur instanceof AggregateError) {
      out.push(`${cur.message}: ${cur.errors.map(errorMessage).join('; ')}`);
    } else {
      out.push(errorMessage(cur));
    }
    cur = cur instanceof Error ? (cur as Error & { cause?: unknown }).cause : undefined;
  }
  return out;
}
