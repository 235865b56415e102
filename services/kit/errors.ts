// Errors that steer delivery (workers) and HTTP status (routes).

/** The message can never succeed: it goes straight to the DLQ. `throw new NonRetryableError('550 mailbox unavailable')` */
export class NonRetryableError extends Error {
  override name = 'NonRetryableError';
  readonly reason: string;
  constructor(message: string, options?: { cause?: unknown; reason?: string }) {
    super(message, options);
    this.reason = options?.reason ?? 'non-retryable';
  }
}

/** Try again after `delayMs` (e.g. a Retry-After); does not count as a failure of the handler. `throw new RetryLaterError(2000, 'rate limited')` */
export class RetryLaterError extends Error {
  override name = 'RetryLaterError';
  readonly delayMs: number;
  constructor(delayMs: number, message = `retry in ${delayMs} ms`, options?: { cause?: unknown }) {
    super(message, options);
    this.delayMs = delayMs;
  }
}

// The HTTP errors live with the rest of the HTTP layer; imported from here by many services.
export { clip, HttpError, notFound, type ErrorDetail } from './http/errors.ts';

/** Start-up configuration problems, reported all at once. */
export class ConfigError extends Error {
  override name = 'ConfigError';
}

/** Provisioned JetStream config differs from streams/*.json (e.g. a field the server dropped). */
export class ProvisioningError extends Error {
  override name = 'ProvisioningError';
}
