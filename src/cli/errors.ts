// CLI-side errors: usage errors exit 2; API errors carry the daemon's code and exit 1.
export class UsageError extends Error {
  readonly exitCode = 2;
}

export class ApiError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly status: number,
    readonly details: unknown,
  ) {
    super(message);
  }
}

export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode = 1,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}
