// An in-process orderflow for tests: a private nats-server, a fresh database, an SMTP
// sink, and the real runtime with the real registry.
import type { SpanExporter } from '@opentelemetry/sdk-trace-base';
import { createLogger } from '../kit/index.ts';
import { startRuntime, type Cluster } from '../kit/runtime.ts';
import type { Env } from '../kit/index.ts';
import { createTestDatabase, startTestNats, type TestNats } from './servers.ts';
import { externals, openapi, registry, sharedRoutes, verifier } from '../main.ts';
import { startSmtpSink, type SmtpSink } from '../simulators/smtp-sink.ts';
import { responseChecker, type ResponseCheck } from './openapi.ts';

export type Answer = { status: number; body: any; headers: Headers };

/** Calls over the cluster's real HTTP port as one principal (a bearer token), or with none (`null`). */
export type ApiClient = {
  request(method: string, path: string, body?: unknown, headers?: Record<string, string>): Promise<Answer>;
  /** POST JSON. */
  post(path: string, body: unknown, headers?: Record<string, string>): Promise<Answer>;
  get(path: string, headers?: Record<string, string>): Promise<Answer>;
  put(path: string, body: unknown, headers?: Record<string, string>): Promise<Answer>;
  delete(path: string, headers?: Record<string, string>): Promise<Answer>;
};

/** A signed-in test principal: its id, access token and a client that calls as it. */
export type TestUser = ApiClient & { id: string; email: string; token: string };

export type TestCluster = Cluster & ApiClient & {
  nats: TestNats; sink: SmtpSink; databaseUrl: string; env: Env;
  /** The development admin's access token (what post/get send unless a call sets `authorization` itself). */
  token(): Promise<string>;
  /** `{ authorization: 'Bearer <admin token>' }`, for a test's own fetch. */
  authHeaders(): Promise<Record<string, string>>;
  /** `app.request` in process, as the development admin unless `init.headers` sets `authorization`. `await c.fetch('/api/orders/x')` */
  fetch(path: string, init?: RequestInit): Promise<Response>;
  /** Calls as another principal's token, or with no token at all (`c.as(null)`). */
  as(token: string | null): ApiClient;
  /** Register a user, give it `roles` (as the admin), log it in. `const ana = await c.user(['customer'])` */
  user(roles: string[], name?: string): Promise<TestUser>;
  close(): Promise<void>;
};

/** The development admin (identity/users.ts), created at start-up while ADMIN_EMAIL is unset outside production. */
export const DEV_ADMIN = { email: 'admin@orderflow.local', password: 'orderflow-dev-admin' } as const;

/** Log in over HTTP; the access token. `const token = await login(url)` (the development admin by default) */
export async function login(url: string, who: { email: string; password: string } = DEV_ADMIN): Promise<string> {
  const res = await fetch(`${url}/api/auth/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(who) });
  const body = await res.json() as { accessToken?: string };
  if (res.status !== 200 || !body.accessToken) throw new Error(`login of ${who.email} at ${url} answered ${res.status}: ${JSON.stringify(body)}`);
  return body.accessToken;
}

/**
 * A token source for a cluster at `url`: logs in once, and again before the token expires
 * (10 minutes by default), so a long test file keeps calling. `const token = tokenSource(url); await token()`
 */
export function tokenSource(url: string, who: { email: string; password: string } = DEV_ADMIN): () => Promise<string> {
  let current: Promise<{ token: string; at: number }> | undefined;
  return async () => {
    if (!current || Date.now() - (await current.catch(() => ({ at: 0 }))).at > 240_000) {
      current = login(url, who).then((token) => ({ token, at: Date.now() }));
    }
    return (await current).token;
  };
}

const hasAuthorization = (h: Record<string, string>) => Object.keys(h).some((k) => k.toLowerCase() === 'authorization');

/** An ApiClient for `url` sending the token `auth()` gives (none when it gives null); `check` sees each answer and throws to fail the call. */
export function apiClient(url: string, auth: () => Promise<string | null>, check?: (method: string, path: string, answer: Answer, contentType: string | null) => Promise<void>): ApiClient {
  const request = async (method: string, path: string, body?: unknown, headers: Record<string, string> = {}) => {
    const token = hasAuthorization(headers) ? null : await auth();
    const res = await fetch(url + path, {
      method,
      headers: { ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...(token ? { authorization: `Bearer ${token}` } : {}), ...headers },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    let parsed: unknown = text;
    try { parsed = JSON.parse(text); } catch { /* not JSON */ }
    const answer = { status: res.status, body: parsed as any } as Answer;
    // Not enumerable: tests compare whole answers (a replay equals its first answer) and headers differ in ids and dates.
    Object.defineProperty(answer, 'headers', { value: res.headers, enumerable: false });
    await check?.(method, path, answer, res.headers.get('content-type'));
    return answer;
  };
  return {
    request,
    post: (path, body, headers) => request('POST', path, body, headers),
    get: (path, headers) => request('GET', path, undefined, headers),
    put: (path, body, headers) => request('PUT', path, body, headers),
    delete: (path, headers) => request('DELETE', path, undefined, headers),
  };
}

/**
 * A check of each answer against the cluster's /openapi.json (fetched at the first answer):
 * throws when the status or the body is not what the document declares.
 */
export function specCheck(url: string) {
  let checker: Promise<ResponseCheck> | undefined;
  return async (method: string, path: string, answer: Answer, contentType: string | null) => {
    checker ??= fetch(`${url}/openapi.json`).then(async (r) => responseChecker(await r.json()));
    const problem = (await checker)(method, path, answer.status, answer.body, contentType);
    if (problem) throw new Error(`answer does not match /openapi.json: ${problem}`);
  };
}

/** TARGET with identity added, so a test can always log in (`identity: false` keeps it as given). */
export const withIdentity = (target: string | undefined) =>
  (!target || target.trim() === 'all' || target.split(',').map((t) => t.trim()).includes('identity') ? target : `identity,${target}`);

/**
 * `const c = await startTestCluster({ TARGET: 'orders,notifications,admin' })`. Identity runs too
 * (unless `opts.identity === false`), and `c.post`/`c.get` call as the development admin.
 */
export async function startTestCluster(env: Env = {}, shared?: { nats?: TestNats; databaseUrl?: string; sink?: SmtpSink; spans?: SpanExporter }, opts: { identity?: boolean; checkAnswers?: boolean } = {}): Promise<TestCluster> {
  const nats = shared?.nats ?? await startTestNats();
  const db = shared?.databaseUrl ? undefined : await createTestDatabase();
  const sink = shared?.sink ?? await startSmtpSink({ port: 0 });
  const fullEnv: Env = {
    NATS_URL: nats.url, DATABASE_URL: shared?.databaseUrl ?? db!.url, PORT: '0', HOST: '127.0.0.1',
    LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent', SMTP_URL: sink.url, DB_POOL_MAX: '10',
    // TARGET=all would start scoring in a child process of its own (funding/scoring-process.ts): a
    // second boot per test cluster. Tests of that placement ask for it.
    FUNDING_SCORING_PROCESS: 'inline',
    // Every call of a test comes from 127.0.0.1 as the development admin: the per-principal and
    // per-address limits would throttle the tests themselves. Tests of the limits set their own.
    RATE_LIMIT_RPS: '1000000', RATE_LIMIT_BURST: '1000000', RATE_LIMIT_ANON_RPS: '1000000', ...env,
  };
  if (opts.identity !== false) fullEnv.TARGET = withIdentity(fullEnv.TARGET);
  // `spans` (an InMemorySpanExporter) turns tracing on and receives each span as it ends.
  const cluster = await startRuntime({ env: fullEnv, registry, externals, verifier, openapi, routes: sharedRoutes, log: createLogger({ level: fullEnv.LOG_LEVEL }), spanExporter: shared?.spans });
  // The first admin: ADMIN_EMAIL's when the test names one, else the development admin.
  const token = tokenSource(cluster.url, fullEnv.ADMIN_EMAIL && fullEnv.ADMIN_PASSWORD ? { email: fullEnv.ADMIN_EMAIL, password: fullEnv.ADMIN_PASSWORD } : DEV_ADMIN);
  // A gateway's /openapi.json is its upstreams' business, not its own: `checkAnswers: false` there.
  const check = opts.checkAnswers === false ? undefined : specCheck(cluster.url);
  const as = (t: string | null) => apiClient(cluster.url, async () => t, check);
  // Without identity nobody can log in: calls then carry no token.
  const admin = apiClient(cluster.url, opts.identity === false ? async () => null : token, check);
  let users = 0;
  return {
    ...cluster, nats, sink, databaseUrl: fullEnv.DATABASE_URL!, env: fullEnv,
    ...admin,
    token, as,
    async fetch(path, init = {}) {
      const headers = new Headers(init.headers);
      if (!headers.has('authorization') && opts.identity !== false) headers.set('authorization', `Bearer ${await token()}`);
      const res = await cluster.app.request(path, { ...init, headers });
      const type = res.headers.get('content-type');
      if (type?.includes('application/json')) {
        const body = await res.clone().json().catch(() => undefined);
        await check?.(init.method ?? 'GET', path, { status: res.status, body } as Answer, type);
      }
      return res;
    },
    authHeaders: async () => ({ authorization: `Bearer ${await token()}` }),
    async user(roles, name = 'Test User') {
      const email = `u${++users}-${Math.random().toString(36).slice(2, 10)}@example.com`;
      const password = 'correct-horse-battery';
      const reg = await as(null).post('/api/auth/register', { email, password, name });
      if (reg.status !== 201) throw new Error(`register answered ${reg.status}: ${JSON.stringify(reg.body)}`);
      if (roles.join() !== 'customer') {
        const set = await admin.put(`/api/admin/users/${reg.body.id}/roles`, { roles });
        if (set.status !== 200) throw new Error(`setting roles answered ${set.status}: ${JSON.stringify(set.body)}`);
      }
      const t = await login(cluster.url, { email, password });
      return { id: reg.body.id, email, token: t, ...as(t) };
    },
    async close() {
      await cluster.stop();
      if (!shared?.sink) await sink.close();
      if (db) await db.drop().catch(() => {});
      if (!shared?.nats) await nats.stop();
    },
  };
}

export type SpawnedCluster = {
  url: string; port: number; pid: number; kill9(): Promise<void>; sigterm(): Promise<number | null>; output(): string;
  /** `{ authorization: 'Bearer <development admin token>' }` (logs in at the first call). */
  authHeaders(): Promise<Record<string, string>>;
};

/**
 * Run `node services/main.ts` as a child process (for kill -9 and SIGTERM tests); `detached` makes it lead a session of its own.
 * Identity runs in it too unless `identity: false` (a test then logs in at another process on the same database).
 */
export async function spawnCluster(env: Env, opts: { detached?: boolean; identity?: boolean; readyTimeoutMs?: number } = {}): Promise<SpawnedCluster> {
  if (opts.identity !== false && env.TARGET) env = { ...env, TARGET: withIdentity(env.TARGET) };
  // freePort() closes its probe before the child binds, and in that gap another
  // test's outbound connection can take the port: try again on a fresh one.
  for (let attempt = 1; ; attempt++) {
    try {
      return await spawnOnce(env, opts.detached ?? false, opts.readyTimeoutMs ?? 30_000);
    } catch (err) {
      if (env.PORT || attempt >= 3 || !String(err).includes('EADDRINUSE')) throw err;
    }
  }
}

async function spawnOnce(env: Env, detached: boolean, readyTimeoutMs: number): Promise<SpawnedCluster> {
  const { spawn } = await import('node:child_process');
  const { freePort, eventually } = await import('./servers.ts');
  const port = Number(env.PORT) || await freePort();
  const child = spawn(process.execPath, [new URL('../main.ts', import.meta.url).pathname], {
    // As startTestCluster: the tests' own calls must not meet the per-principal and per-address limits.
    env: { ...process.env, LOG_LEVEL: 'warn', RATE_LIMIT_RPS: '1000000', RATE_LIMIT_BURST: '1000000', RATE_LIMIT_ANON_RPS: '1000000', ...env, PORT: String(port), HOST: '127.0.0.1' },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached,
  });
  let out = '';
  child.stdout.on('data', (d) => { out = (out + d).slice(-20_000); });
  child.stderr.on('data', (d) => { out = (out + d).slice(-20_000); });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  // A child in its own session gets no signal when this process's terminal or group does:
  // take it down with us however we exit.
  if (detached) {
    const reap = () => { child.kill('SIGKILL'); };
    process.once('exit', reap);
    void exited.then(() => process.off('exit', reap));
  }
  const url = `http://127.0.0.1:${port}`;
  // An exit ends the wait at once (a throw would only be retried until the timeout).
  const state = await eventually(async () => {
    if (child.exitCode !== null) return 'exited';
    return (await fetch(`${url}/readyz`)).status === 200 ? 'ready' : undefined;
  }, { timeoutMs: readyTimeoutMs, what: 'spawned cluster ready' }).catch((err) => {
    // Never ready: no caller holds it, so nobody else would ever stop it.
    child.kill('SIGKILL');
    throw err;
  });
  if (state === 'exited') throw new Error(`cluster exited with ${child.exitCode}: ${out}`);
  const token = tokenSource(url);
  return {
    url, port, pid: child.pid!, output: () => out,
    authHeaders: async () => ({ authorization: `Bearer ${await token()}` }),
    async kill9() { child.kill('SIGKILL'); await exited; },
    async sigterm() { child.kill('SIGTERM'); return await exited; },
  };
}
