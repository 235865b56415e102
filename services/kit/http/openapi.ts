// OpenAPI 3.1 from the route table (route.ts): every declared route with its parameters,
// body, answers, error bodies and security, the schemas converted by zod 4's
// z.toJSONSchema. The document is what the routes check, since both come from one
// declaration: `GET /openapi.json` serves it and the test suite validates answers with it.
import { z, type ZodType } from 'zod';
import type { RouteEntry, RouteTable } from './route.ts';

/** The contract's error body (errors.ts errorBody), as a schema. */
export const ErrorBody = z.object({
  error: z.object({
    code: z.string(),
    message: z.string(),
    details: z.array(z.object({ field: z.string(), message: z.string() })).optional(),
  }),
});

type Json = Record<string, unknown>;

/** The contract's error codes by status, for the descriptions of the error answers. */
const ERROR_TEXT: Record<number, string> = {
  400: 'VALIDATION_FAILED: the request is malformed; `details` names each bad field',
  401: 'UNAUTHENTICATED: no token, or a bad, expired or foreign-signed one (with WWW-Authenticate: Bearer)',
  403: 'FORBIDDEN: the token lacks the role or scope this needs',
  404: 'NOT_FOUND (also for a resource of another principal)',
  409: 'a conflict; the code says which (REQUEST_IN_PROGRESS for an Idempotency-Key still running)',
  413: 'PAYLOAD_TOO_LARGE',
  415: 'UNSUPPORTED_MEDIA_TYPE: send application/json',
  422: 'IDEMPOTENCY_KEY_REUSED: the key was used with another body',
  426: 'UPGRADE_REQUIRED: send Upgrade: websocket',
  429: 'RATE_LIMITED, with Retry-After and RateLimit-*',
  503: 'UNAVAILABLE: a dependency is down; retry (Retry-After)',
};

/** Every scope a client may hold (identity/clients.ts), for the oauth2 flow's scope list. */
export type OpenApiOptions = { title?: string; version?: string; description?: string; scopes?: readonly string[] };

/**
 * Build the document. `const doc = openApiDocument(routes.table, { version: '0.1.0', scopes: SCOPES })`
 */
export function openApiDocument(table: RouteTable, o: OpenApiOptions = {}): Json {
  const components: Record<string, unknown> = {};
  const convert = (schema: ZodType, io: 'input' | 'output'): Json => {
    const js = z.toJSONSchema(schema, { io, unrepresentable: 'any' }) as Json;
    return hoist(js, components);
  };
  const errorRef = { $ref: '#/components/schemas/Error' };
  components.Error = hoist(z.toJSONSchema(ErrorBody, { io: 'output' }) as Json, components);

  const paths: Record<string, Record<string, Json>> = {};
  for (const r of table.routes) {
    if (r.document === false) continue;
    (paths[r.path] ??= {})[r.method.toLowerCase()] = operation(r, convert, errorRef);
  }
  return {
    openapi: '3.1.0',
    info: { title: o.title ?? 'orderflow', version: o.version ?? '0.0.0', ...(o.description ? { description: o.description } : {}) },
    paths,
    components: {
      schemas: components,
      securitySchemes: {
        bearer: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT', description: 'An access token from POST /api/auth/login (users) or POST /api/auth/token (clients)' },
        clientCredentials: {
          type: 'oauth2', description: 'OAuth 2.0 client credentials (RFC 6749 §4.4), client id and secret by HTTP Basic',
          flows: { clientCredentials: { tokenUrl: '/api/auth/token', scopes: Object.fromEntries((o.scopes ?? []).map((s) => [s, s])) } },
        },
        accessTokenQuery: { type: 'apiKey', in: 'query', name: 'access_token', description: 'The access token in the query, on the SSE and WebSocket routes (browsers cannot set headers there)' },
        consoleSession: { type: 'apiKey', in: 'cookie', name: 'orderflow_console_at', description: "The operator console's session, set by signing in at /admin/login (HttpOnly, SameSite=Strict)" },
      },
    },
  };
}

function operation(r: RouteEntry, convert: (s: ZodType, io: 'input' | 'output') => Json, errorRef: Json): Json {
  const op: Json = {
    operationId: `${r.method.toLowerCase()}${r.path.replace(/\{(\w+)\}/g, 'By-$1').split(/[^A-Za-z0-9]+/).filter(Boolean).map((w) => w[0]!.toUpperCase() + w.slice(1)).join('')}`,
    summary: r.summary, tags: r.tags,
  };
  const access = r.access;
  // A public /api route verifies a token when one is sent (route.ts): optional security.
  const optionalToken = access === 'public' && r.path.startsWith('/api/');
  const needs = access === 'public'
    ? (optionalToken ? `none (public); a bearer token, when sent, is verified and the call limited as its principal${r.invalidToken === 'anonymous' ? ' (one that does not verify leaves the call anonymous)' : ' (one that does not verify is 401)'}` : 'none (public)')
    : access === 'signed-in' ? 'any valid token'
    : [access.roles?.length ? `a user with role ${access.roles.join(' or ')}` : '', access.scopes?.length ? `a client with scope ${access.scopes.join(' or ')}` : ''].filter(Boolean).join('; or ');
  op.description = [r.description, `Access: ${needs}.`].filter(Boolean).join('\n\n');
  op['x-access'] = access === 'public' || access === 'signed-in' ? access : { roles: access.roles ?? [], scopes: access.scopes ?? [] };

  const parameters: Json[] = [];
  for (const name of [...r.path.matchAll(/\{(\w+)\}/g)].map((m) => m[1]!)) {
    const p = r.params?.[name];
    parameters.push({ name, in: 'path', required: true, ...(p?.description ? { description: p.description } : {}), schema: p?.schema ? convert(p.schema, 'input') : { type: 'string' } });
  }
  if (r.query) {
    const q = convert(r.query, 'input');
    const required = new Set((q.required as string[] | undefined) ?? []);
    for (const [name, schema] of Object.entries((q.properties ?? {}) as Record<string, Json>)) {
      parameters.push({ name, in: 'query', required: required.has(name), schema });
    }
  }
  if (r.idempotent) {
    parameters.push({ name: 'Idempotency-Key', in: 'header', required: false, description: 'The same key and body replay the first answer; another body is 422; a key still running is 409', schema: { type: 'string', pattern: '^[\\x21-\\x7e]{1,255}$' } });
  }
  if (parameters.length) op.parameters = parameters;

  if (r.body) {
    const type = r.body.form ? 'application/x-www-form-urlencoded' : 'application/json';
    op.requestBody = { required: !r.body.optional, content: { [type]: { schema: convert(r.body.schema, 'input') } } };
  }

  const responses: Record<string, Json> = {};
  for (const [status, spec] of Object.entries(r.responses)) {
    const res: Json = { description: spec.description };
    if (spec.headers) res.headers = Object.fromEntries(Object.entries(spec.headers).map(([h, d]) => [h, { description: d, schema: { type: 'string' } }]));
    if (spec.type === 'event-stream') res.content = { 'text/event-stream': { schema: { type: 'string' } } };
    else if (spec.type === 'text') res.content = { 'text/plain': { schema: { type: 'string' } } };
    else if (spec.type === 'html') res.content = { 'text/html': { schema: { type: 'string' } } };
    else if (spec.type === 'binary') res.content = { 'application/octet-stream': { schema: { type: 'string', contentMediaType: 'application/octet-stream' } } };
    else if (spec.type !== 'empty' && spec.type !== 'websocket') res.content = { 'application/json': { schema: spec.schema ? convert(spec.schema, 'output') : {} } };
    responses[status] = res;
  }
  const errors = new Set<number>(r.errors ?? []);
  if (r.body || r.query || r.idempotent || r.path.includes('{')) errors.add(400);
  if (!r.session && (access !== 'public' || (optionalToken && r.invalidToken !== 'anonymous'))) errors.add(401);
  if (!r.session && typeof access === 'object') errors.add(403);
  if (r.idempotent) { errors.add(409); errors.add(422); }
  if (r.body) { errors.add(413); errors.add(415); }
  if (r.path.startsWith('/api/')) errors.add(429);
  errors.add(503);
  for (const status of [...errors].sort()) {
    if (responses[status]) continue;
    const res: Json = { description: ERROR_TEXT[status] ?? 'an error in the contract\'s format', content: { 'application/json': { schema: errorRef } } };
    if (status === 401) res.headers = { 'WWW-Authenticate': { description: 'Bearer', schema: { type: 'string' } } };
    if (status === 429 || status === 503) res.headers = { 'Retry-After': { description: 'seconds', schema: { type: 'string' } } };
    responses[status] = res;
  }
  responses.default = { description: 'any other error, in the contract\'s format (500 INTERNAL never carries a stack trace)', content: { 'application/json': { schema: errorRef } } };
  op.responses = responses;

  if (r.session) op.security = access === 'public' ? [] : [{ consoleSession: [] }];
  else if (access === 'public') op.security = optionalToken ? [{}, { bearer: [] }, { clientCredentials: [] }] : [];
  else {
    const scopes = typeof access === 'object' ? [...(access.scopes ?? [])] : [];
    op.security = [{ bearer: [] }, { clientCredentials: scopes }, ...(r.tokenInQuery ? [{ accessTokenQuery: [] }] : [])];
  }
  return op;
}

/** Move a converted schema's `$defs` (schemas with a meta id) to the components, rewriting their refs; drop `$schema`. */
function hoist(js: Json, components: Record<string, unknown>): Json {
  const { $schema: _s, $defs, ...rest } = js;
  const rewrite = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(rewrite);
    if (!v || typeof v !== 'object') return v;
    const out: Json = {};
    for (const [k, x] of Object.entries(v)) out[k] = k === '$ref' && typeof x === 'string' ? x.replace('#/$defs/', '#/components/schemas/') : rewrite(x);
    return out;
  };
  for (const [id, def] of Object.entries(($defs ?? {}) as Json)) components[id] = rewrite(def);
  return rewrite(rest) as Json;
}
