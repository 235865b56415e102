// Routes declared once. A declaration says who may call the route (public, any signed-in
// principal, or roles/scopes), what it takes (query, body, Idempotency-Key) and what it
// answers; `routes.add(def)` mounts the handler behind the checks derived from that
// declaration and records it in the process's route table, from which /openapi.json and
// the 405 answers are made (openapi.ts). So the check and the document cannot disagree.
//
// The chain per route: authentication (optional on public /api routes: a token sent is
// verified, none is anonymous) → the runtime's rate limiter (every /api route, public ones
// included; no principal means "by client address")
// → the role/scope check → Idempotency-Key → the parsed query and body → the handler.
import type { Context, MiddlewareHandler } from 'hono';
import type { ZodType } from 'zod';
import { optionalAuth, requireAccess, requireAuth, type AuthEnv, type InvalidTokenAnswer, type Principal, type Verifier } from '../auth.ts';
import type { MikroORM } from '../db.ts';
import { ConfigError } from '../errors.ts';
import type { App, AppEnv } from './app.ts';
import { clip, errorBody } from './errors.ts';
import { idempotency } from './idempotency.ts';
import { readJson, validate } from './validate.ts';

export type HttpMethod = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';

/** Who may call a route: anyone, any valid token, or a user with one of `roles` / a client with one of `scopes`. */
export type Access = 'public' | 'signed-in' | { roles?: readonly string[]; scopes?: readonly string[] };

/** What a route's handler sees on the context: the principal is set on every route that is not public. */
export type ApiEnv = { Variables: AppEnv['Variables'] & Partial<AuthEnv['Variables']> };

/** One success answer. `type` says how it is sent: JSON (the default, `schema` its body), SSE, a WebSocket upgrade, or no body. */
export type ResponseSpec = { description: string; schema?: ZodType; type?: 'json' | 'event-stream' | 'websocket' | 'text' | 'html' | 'binary' | 'empty'; headers?: Record<string, string> };

/** A request body: its schema (documented, and what the body is parsed with), or a custom parse, optional, or a form the handler reads itself. */
export type BodySpec<B> = {
  schema: ZodType<B>;
  /** Parse the raw JSON here instead of `schema.parse` (e.g. to cap the error details); throw the contract's 400. */
  parse?: (raw: unknown) => B;
  /** An empty body is allowed (the handler gets undefined). */
  optional?: boolean;
  /** application/x-www-form-urlencoded, read by the handler itself (documented only). */
  form?: boolean;
};

export type RouteInput<B, Q> = { body: B; query: Q; principal: Principal | undefined };

export type RouteDef<B = unknown, Q = unknown> = {
  method: HttpMethod;
  /** OpenAPI form: `/api/orders/{id}`. */
  path: `/${string}`;
  summary: string;
  description?: string;
  tags: string[];
  access: Access;
  /**
   * A public /api route verifies a bearer token when one is sent (so the limiter counts its
   * principal); one that does not verify is 401 ('refuse', the default), or leaves the caller
   * anonymous ('anonymous': the routes that hand out tokens, which a client calls with its stale one).
   */
  invalidToken?: InvalidTokenAnswer;
  /** Also take the token as `?access_token=` (SSE and WebSocket: browsers cannot set headers there). */
  tokenInQuery?: boolean;
  /** Path parameters, documented; the handler reads them (a malformed id is a 404, as an unknown one). */
  params?: Record<string, { description?: string; schema?: ZodType }>;
  query?: ZodType<Q>;
  body?: ZodType<B> | BodySpec<B>;
  /**
   * Takes `Idempotency-Key` (kit/http/idempotency.ts). `scope` defaults to `METHOD path`; a function
   * scopes it per request (e.g. per resource). `commit: 'handler'` when the handler stores the key itself.
   */
  idempotency?: { scope?: string | ((c: Context<ApiEnv>) => string); commit?: 'handler' };
  /** `false`: kept out of /openapi.json (a page's script or asset), but in the table for 405 and Allow. */
  document?: false;
  /** Success answers by status. */
  responses: Record<number, ResponseSpec>;
  /** Error statuses the route answers besides those its declaration implies (400, 401, 403, 413, 415, 409/422 of keys, 429, 503). */
  errors?: number[];
  handler: (c: Context<ApiEnv>, input: RouteInput<B, Q>) => Response | Promise<Response>;
};

/** A declared route as the table keeps it (everything but the handler), for /openapi.json, 405 and the console. */
export type RouteEntry = Omit<RouteDef, 'handler' | 'body' | 'idempotency'> & {
  body?: BodySpec<unknown>;
  idempotent: boolean;
  /** Mounted with routes.mount: the mounted app authenticates by its own cookie session, not a bearer token. */
  session?: boolean;
  /** The Hono pattern it is mounted on: `/api/orders/:id`. */
  honoPath: string;
  /** Matches a concrete path of this route. */
  pattern: RegExp;
};

/** The process's declared routes, in registration order. One per process (Deps.routes.table); no module state. */
export type RouteTable = { routes: RouteEntry[] };

/** `const table = createRouteTable()` */
export const createRouteTable = (): RouteTable => ({ routes: [] });

/**
 * A Hono app with its own authentication (the operator console's cookie session), mounted
 * under `prefix`: each of its routes is recorded in the table (405 and Allow, and the access
 * it enforces), while its own guards, error pages and middleware keep running it.
 */
export type MountDef = {
  prefix: `/${string}`;
  app: { routes: readonly { method: string; path: string }[] };
  tags: string[];
  /** Who may call a route of the app, by its path (OpenAPI form, prefix included); the app's guards must enforce the same (it derives them from one declaration). */
  access: (path: string) => Access;
  /** The routes listed in /openapi.json (`'GET /admin'`), with their summary and answers; the rest are in the table only. */
  documented?: Record<string, { summary: string; responses: Record<number, ResponseSpec> }>;
};

export type Routes = {
  table: RouteTable;
  /** Declare and mount a route. `routes.add({ method: 'GET', path: '/api/orders/{id}', access: { roles: ['customer'] }, …, handler })` */
  add<B = undefined, Q = undefined>(def: RouteDef<B, Q>): void;
  /** Mount an app that authenticates by itself and record its routes. `routes.mount({ prefix: '/admin', app: console, tags: ['console'], access })` */
  mount(def: MountDef): void;
};

export type RoutesOptions = {
  app: App;
  table: RouteTable;
  /** For Idempotency-Key routes. */
  orm?: MikroORM;
  /** Verifies bearer tokens; a route that is not public cannot be declared without one. */
  verifier?: Verifier;
  /** The runtime's rate limiter, run right after authentication on every /api route (public ones too, without a principal). */
  limit?: MiddlewareHandler;
};

const honoPathOf = (path: string) => path.replace(/\{(\w+)\}/g, ':$1');
/** `/admin/orders/:id` → `/admin/orders/{id}`; a pattern with a regex (`:id{[0-9]+}`) keeps only its name. */
const openApiPathOf = (honoPath: string) => honoPath.replace(/:(\w+)(\{[^}]*\})?/g, '{$1}');
const patternOf = (path: string) =>
  new RegExp(`^${path.split(/\{\w+\}/).map((s) => s.replace(/[.*+?^$()|[\]\\]/g, '\\$&')).join('[^/]+')}/?$`);
const isBodySpec = <B>(b: ZodType<B> | BodySpec<B>): b is BodySpec<B> => 'schema' in b && !('safeParse' in b);

/** `const routes = createRoutes({ app, table: createRouteTable(), orm, verifier, limit })` */
export function createRoutes(o: RoutesOptions): Routes {
  return {
    table: o.table,
    add(def) {
      if (o.table.routes.some((r) => r.method === def.method && r.path === def.path)) throw new ConfigError(`route ${def.method} ${def.path} declared twice`);
      const body = def.body === undefined ? undefined : isBodySpec(def.body) ? def.body : { schema: def.body };
      const honoPath = honoPathOf(def.path);
      const chain: MiddlewareHandler[] = [];
      const api = def.path.startsWith('/api/');
      if (def.access !== 'public') {
        if (!o.verifier) throw new ConfigError(`route ${def.method} ${def.path} needs a token verifier and the runtime has none`);
        chain.push(requireAuth(o.verifier, { queryToken: def.tokenInQuery }) as MiddlewareHandler);
      } else if (api && o.verifier) {
        // Public, but a caller that sends its token is limited as itself, not as its address.
        // Verification is local (cached keys and tokens): no call to identity per request.
        chain.push(optionalAuth(o.verifier, { invalid: def.invalidToken }) as MiddlewareHandler);
      }
      if (o.limit && api) chain.push(o.limit);
      if (typeof def.access === 'object') chain.push(requireAccess(def.access) as MiddlewareHandler);
      if (def.idempotency) {
        if (!o.orm) throw new ConfigError(`route ${def.method} ${def.path} takes Idempotency-Key and the runtime gave no database`);
        const { scope, commit } = def.idempotency;
        if (typeof scope === 'function') {
          const orm = o.orm;
          chain.push(async (c, next) => await idempotency(orm, scope(c as Context<ApiEnv>), { commit })(c, next));
        } else {
          chain.push(idempotency(o.orm, scope ?? `${def.method} ${def.path}`, { commit }) as MiddlewareHandler);
        }
      }
      const { handler, query } = def;
      const parse = body?.form ? undefined : body?.parse ?? ((raw: unknown) => validate(raw, body!.schema));
      const optional = body?.optional ?? false;
      // Hono's typed overloads do not take a spread chain; the chain is typed above.
      const app = o.app as unknown as { on(method: string, path: string, ...handlers: MiddlewareHandler[]): unknown };
      app.on(def.method, honoPath, ...chain, async (c) => {
        const ctx = c as unknown as Context<ApiEnv>;
        let parsed: unknown;
        if (body && parse) {
          if (optional && !(await c.req.text()).length) parsed = undefined;
          else parsed = body.parse ? body.parse(await readJson(c, UNKNOWN)) : await readJson(c, body.schema);
        }
        const q = query ? validate(c.req.query(), query) : undefined;
        return await handler(ctx, { body: parsed as never, query: q as never, principal: ctx.get('principal') });
      });
      const { handler: _h, body: _b, idempotency: idem, ...doc } = def;
      o.table.routes.push({ ...doc, body, idempotent: Boolean(idem), honoPath, pattern: patternOf(def.path) } as RouteEntry);
    },
    mount(def) {
      const entries: RouteEntry[] = [];
      const seen = new Set<string>();
      for (const r of def.app.routes) {
        // Middleware (`use`) and catch-alls are registered as ALL or with a `*`: not routes.
        if (r.method === 'ALL' || r.path.includes('*')) continue;
        const honoPath = (def.prefix + (r.path === '/' ? '' : r.path)).replace(/\/$/, '') || '/';
        const path = openApiPathOf(honoPath) as `/${string}`;
        const key = `${r.method} ${path}`;
        if (seen.has(key)) continue; // a route with its guard is registered once per handler
        seen.add(key);
        if (o.table.routes.some((x) => x.method === r.method && x.path === path)) throw new ConfigError(`route ${key} declared twice`);
        const documented = def.documented?.[key];
        entries.push({
          method: r.method as HttpMethod, path, honoPath, pattern: patternOf(path), tags: def.tags, access: def.access(path), session: true, idempotent: false,
          summary: documented?.summary ?? key, responses: documented?.responses ?? {}, ...(documented ? {} : { document: false as const }),
        });
      }
      o.app.route(def.prefix, def.app as never);
      o.table.routes.push(...entries);
    },
  };
}

// readJson's parse step with no schema of its own: the route's `parse` validates.
const UNKNOWN = { safeParse: (data: unknown) => ({ success: true as const, data }) } as unknown as ZodType<unknown>;

/** The methods the table serves on this path (for 405's Allow), or none for a path it does not know. `allowedMethods(table, '/api/orders/x')` */
export function allowedMethods(table: RouteTable, path: string): string[] {
  const methods = new Set<string>();
  for (const r of table.routes) if (r.pattern.test(path)) methods.add(r.method);
  if (methods.has('GET')) methods.add('HEAD');
  return [...methods];
}

/**
 * The app's not-found answer: 405 METHOD_NOT_ALLOWED with `Allow` for a path the table
 * knows with another method, else 404. `app.notFound(notFoundOrNotAllowed(table))`
 */
export function notFoundOrNotAllowed(table: RouteTable) {
  return (c: Context) => {
    const allow = allowedMethods(table, c.req.path);
    if (allow.length) {
      return c.json(errorBody('METHOD_NOT_ALLOWED', `${c.req.method} is not allowed here; allowed: ${allow.join(', ')}`), 405, { Allow: allow.join(', ') });
    }
    return c.json(errorBody('NOT_FOUND', `no route for ${c.req.method} ${clip(c.req.path)}`), 404);
  };
}
