// Bodies are JSON, uncompressed: anything else is a 415 before a handler reads it.
import type { MiddlewareHandler } from 'hono';
import { clip, errorBody } from './errors.ts';

const JSON_TYPE = /^application\/([\w.+-]+\+)?json\s*(;|$)/i;

/** `app.use('*', jsonOnly())` */
export function jsonOnly(): MiddlewareHandler {
  return async (c, next) => {
    if (c.req.method === 'POST' || c.req.method === 'PUT' || c.req.method === 'PATCH') {
      const type = c.req.header('content-type');
      const hasBody = type !== undefined || Number(c.req.header('content-length') ?? 0) > 0 || c.req.header('transfer-encoding') !== undefined;
      if (hasBody && !JSON_TYPE.test(type ?? '')) {
        return c.json(errorBody('UNSUPPORTED_MEDIA_TYPE', 'request body must be application/json'), 415);
      }
      // Nothing here decodes a compressed body: reading gzip bytes as JSON would only
      // fail later with a misleading "malformed JSON".
      const encoding = c.req.header('content-encoding')?.trim().toLowerCase();
      if (hasBody && encoding && encoding !== 'identity') {
        return c.json(errorBody('UNSUPPORTED_MEDIA_TYPE', `Content-Encoding ${clip(encoding, 40)} is not supported; send the body uncompressed`), 415);
      }
    }
    await next();
  };
}
