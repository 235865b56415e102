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

export type ErrorDetail = { field: string; message: string };

/** An error with an HTTP status and a contract error code. `throw new HttpError(409, 'DUPLICATE_ORDER', 'orderId exists')` */
export class HttpError extends Error {
  override name = 'HttpError';
  readonly status: number;
  readonly code: string;
  readonly details: ErrorDetail[] | undefined;
  constructor(status: number, code: string, message: string, details?: ErrorDetail[]) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details;
  }
}

/** A client's value as echoed in an error message: a 10 KB id is not repeated back whole. `clip('x'.repeat(500)).length === 121` */
export const clip = (value: string, max = 120) => (value.length > max ? `${value.slice(0, max)}…` : value);

export const notFound = (what: string) => new HttpError(404, 'NOT_FOUND', `${clip(what)} not found`);

/** Start-up configuration problems, reported all at once. */
export class ConfigError extends Error {
  override name = 'ConfigError';
}

/** Provisioned JetStream config differs from streams/*.json (e.g. a field the server dropped). */
export class ProvisioningError extends Error {
  override name = 'ProvisioningError';
}
