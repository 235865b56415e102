// The one error format of CONTRACTS.md: the HttpError routes throw, the onError that maps
// every error to a status and body, and the answers for requests Node refuses itself.
import { STATUS_CODES, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Context } from 'hono';
import { HTTPException } from 'hono/http-exception';
import type { ContentfulStatusCode } from 'hono/utils/http-status';
import type { Logger } from '../log.ts';

export type ErrorDetail = { field: string; message: string };

/** Contract error body. `errorBody('NOT_FOUND', 'order not found')` */
export const errorBody = (code: string, message: string, details?: ErrorDetail[]) =>
  ({ error: { code, message, ...(details ? { details } : {}) } });

/**
 * An error with an HTTP status and a contract error code; a Hono HTTPException, so Hono's
 * own middleware and `getResponse()` see the contract's body too.
 * `throw new HttpError(409, 'DUPLICATE_ORDER', 'orderId exists')`
 */
export class HttpError extends HTTPException {
  override name = 'HttpError';
  readonly code: string;
  readonly details: ErrorDetail[] | undefined;
  constructor(status: number, code: string, message: string, details?: ErrorDetail[], options?: { cause?: unknown }) {
    super(status as ContentfulStatusCode, { message, cause: options?.cause });
    this.code = code;
    this.details = details;
  }
  override getResponse(): Response {
    return Response.json(errorBody(this.code, this.message, this.details), { status: this.status });
  }
}

/** A client's value as echoed in an error message: a 10 KB id is not repeated back whole. `clip('x'.repeat(500)).length === 121` */
export const clip = (value: string, max = 120) => (value.length > max ? `${value.slice(0, max)}…` : value);

/** `throw notFound(\`order ${id}\`)` */
export const notFound = (what: string) => new HttpError(404, 'NOT_FOUND', `${clip(what)} not found`);

/** The app's error handler: HttpError as thrown, a lost dependency 503, anything else 500. `app.onError(onError(log))` */
export function onError(log: Logger) {
  return (err: Error, c: Context) => {
    if (err instanceof HttpError) return c.json(errorBody(err.code, err.message, err.details), err.status);
    if ((err as { status?: number }).status === 413) return c.json(errorBody('PAYLOAD_TOO_LARGE', 'request body too large'), 413);
    const reqLog = (c.get('log') as Logger | undefined) ?? log;
    if (isUnavailable(err)) {
      reqLog.warn({ err: String(err) }, 'dependency unavailable');
      return c.json(errorBody('UNAVAILABLE', 'a dependency is unavailable; retry shortly'), 503, { 'Retry-After': '1' });
    }
    reqLog.error({ err }, 'unhandled error');
    return c.json(errorBody('INTERNAL', 'internal error'), 500);
  };
}

/** The app's 404. `app.notFound(notFoundHandler)` */
export const notFoundHandler = (c: Context) => c.json(errorBody('NOT_FOUND', `no route for ${c.req.method} ${clip(c.req.path)}`), 404);

// Postgres down, restarting, or out of connections: the client should retry, not see a 500.
const UNAVAILABLE_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', '57P01', '57P02', '57P03', '08000', '08001', '08003', '08006', '53300']);
/** Whether an error (or one of its causes) means a dependency is unreachable. `isUnavailable(connectionRefused) === true` */
export function isUnavailable(err: unknown): boolean {
  for (let e = err as { code?: string; name?: string; cause?: unknown } | undefined, i = 0; e && i < 5; e = e.cause as typeof e, i++) {
    if ((e.code && UNAVAILABLE_CODES.has(e.code)) || e.name === 'ConnectionException') return true;
    if (/timeout exceeded when trying to connect|Connection terminated/i.test(String((e as Error).message))) return true;
  }
  return false;
}

type NodeServer = {
  on(event: 'clientError', cb: (err: Error & { code?: string }, socket: Duplex) => void): unknown;
  listeners(event: 'request'): Function[];
  removeAllListeners(event: 'request'): unknown;
  on(event: 'request', cb: (req: IncomingMessage, res: ServerResponse) => void): unknown;
};

/**
 * Requests Node's HTTP parser refuses (a bare CR in a header, a bad chunk size, headers
 * over the limit) never reach the app, and Node answers them, and an HTTP/1.1 request
 * without `Host`, with an empty body. Answer in the contract's error format instead.
 * `answerMalformedRequests(server)`
 */
export function answerMalformedRequests(server: NodeServer): void {
  const malformed = (message: string) => JSON.stringify(errorBody('VALIDATION_FAILED', message, [{ field: '(request)', message: 'not valid HTTP/1.1' }]));
  server.on('clientError', (err, socket) => {
    // Mid-response (a keep-alive connection already answering) or gone: just close it.
    const busy = (socket as Duplex & { _httpMessage?: { headersSent?: boolean } })._httpMessage?.headersSent;
    if (err.code === 'ECONNRESET' || !socket.writable || busy) { socket.destroy(); return; }
    const [status, body] =
      err.code === 'HPE_HEADER_OVERFLOW' ? [431, JSON.stringify(errorBody('HEADERS_TOO_LARGE', 'request headers too large'))]
        : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? [408, JSON.stringify(errorBody('REQUEST_TIMEOUT', 'the request was not received in time'))]
          : [400, malformed('malformed HTTP request')];
    socket.end(`HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`);
  });
  // Node's own Host check (requireHostHeader) ends the response empty; it is turned off and
  // done here, in front of the app's listener, so the client learns what was wrong.
  (server as { requireHostHeader?: boolean }).requireHostHeader = false;
  const app = server.listeners('request') as ((req: IncomingMessage, res: ServerResponse) => void)[];
  server.removeAllListeners('request');
  server.on('request', (req, res) => {
    if (req.httpVersionMajor === 1 && req.httpVersionMinor === 1 && req.headers.host === undefined) {
      const body = malformed('an HTTP/1.1 request needs a Host header');
      res.writeHead(400, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), connection: 'close' }).end(body);
      return;
    }
    for (const listener of app) listener(req, res);
  });
}
