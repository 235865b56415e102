// Bodies are JSON, uncompressed: anything else is a 415 before a handler reads it.
import type { MiddlewareHandler } from 'hono';
import { clip, errorBody } from './errors.ts';

const JSON_TYPE = /^application\/([\w.+-]+\+)?json\s*(;|$)/i;
const FORM_TYPE = /^application\/x-www-form-urlencoded\s*(;|$)/i;

/**
 * `app.use('*', jsonOnly(formPaths))`; `formPaths` (exact paths, or prefixes ending in `/*`; the
 * set may grow after the app is built) also take a form-encoded body, for protocols that
 * prescribe one (OAuth 2.0's token endpoint) and HTML forms (the operator console, `/admin/*`).
 */
const acceptsForm = (paths: ReadonlySet<string>, path: string) =>
  paths.has(path) || [...paths].some((p) => p.endsWith('/*') && path.startsWith(p.slice(0, -1)));

export function jsonOnly(formPaths: ReadonlySet<string> = new Set()): MiddlewareHandler {
  return async (c, next) => {
    if (c.req.method === 'POST' || c.req.method === 'PUT' || c.req.method === 'PATCH') {
      const type = c.req.header('content-type');
      const hasBody = type !== undefined || Number(c.req.header('content-length') ?? 0) > 0 || c.req.header('transfer-encoding') !== undefined;
      const form = FORM_TYPE.test(type ?? '') && acceptsForm(formPaths, c.req.path);
      if (hasBody && !form && !JSON_TYPE.test(type ?? '')) {
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
