// Request bodies and parameters against zod schemas, with the contract's 400.
import type { Context } from 'hono';
import type { ZodType } from 'zod';
import { HttpError, type ErrorDetail } from './errors.ts';

/** Parse and validate a JSON body; 400 with per-field details. `const body = await readJson(c, CreateOrder)` */
export async function readJson<T>(c: Context, schema: ZodType<T>): Promise<T> {
  const text = await c.req.text();
  let raw: unknown;
  try {
    raw = text.length ? JSON.parse(text) : undefined;
  } catch (err) {
    throw new HttpError(400, 'VALIDATION_FAILED', `malformed JSON: ${(err as Error).message}`, [{ field: '(body)', message: 'malformed JSON' }]);
  }
  return validate(raw, schema);
}

/** Validate any value (query, params); throws the contract's 400. `validate(c.req.query(), z.object({ orderId }))` */
export function validate<T>(raw: unknown, schema: ZodType<T>): T {
  const unstorable = unstorableText(raw);
  if (unstorable.length) throw new HttpError(400, 'VALIDATION_FAILED', `invalid request: ${unstorable.map((d) => d.field).join(', ')}`, unstorable);
  const parsed = schema.safeParse(raw);
  if (parsed.success) return parsed.data;
  const details = parsed.error.issues.map((i) => ({ field: i.path.length ? i.path.join('.') : '(body)', message: i.message }));
  throw new HttpError(400, 'VALIDATION_FAILED', `invalid request: ${details.map((d) => d.field).join(', ')}`, details);
}

/**
 * Strings Postgres cannot hold: a NUL (text columns refuse it) or a lone UTF-16
 * surrogate (jsonb refuses it; text columns silently store U+FFFD, so the stored value
 * would no longer equal the request's). JSON escapes let a client send either, and
 * every field would need its own rule to catch them, so every request is checked here
 * once, keys included. `unstorableText({ a: 'x\u0000' }) // [{ field: 'a', ... }]`
 */
export function unstorableText(raw: unknown): ErrorDetail[] {
  const out: ErrorDetail[] = [];
  const bad = (s: string) => !s.isWellFormed() || s.includes('\u0000');
  // The path is joined only for a finding: a 50,000-line lending order is walked often.
  const path: (string | number)[] = [];
  const report = (message: string) => out.push({ field: path.join('.') || '(body)', message });
  const walk = (v: unknown): void => {
    if (typeof v === 'string') {
      if (bad(v)) report('must not contain NUL characters or unpaired UTF-16 surrogates');
      return;
    }
    if (!v || typeof v !== 'object' || path.length >= 64 || out.length >= 20) return;
    if (Array.isArray(v)) {
      for (let i = 0; i < v.length; i++) if (typeof v[i] !== 'number') { path.push(i); walk(v[i]); path.pop(); }
      return;
    }
    for (const k in v) {
      const badKey = bad(k);
      path.push(badKey ? '(key)' : k);
      if (badKey) report('keys must not contain NUL characters or unpaired UTF-16 surrogates');
      walk((v as Record<string, unknown>)[k]);
      path.pop();
    }
  };
  walk(raw);
  return out;
}
