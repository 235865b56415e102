// Configuration from the environment, validated at boot. Each service adds its own
// prefixed variables with `readConfig`; every problem is reported in one error.
import { z } from 'zod';
import { ConfigError } from './errors.ts';
import { isOrigin, parseOrigins } from './http/cors.ts';

type Env = Record<string, string | undefined>;

const SECRET_NAME = /KEY|SECRET|PASSWORD|TOKEN/i;

/** Parse env with a zod object schema; throws ConfigError naming every bad variable. `readConfig(z.object({ PORT: port(8080) }), process.env)` */
export function readConfig<S extends z.ZodObject>(schema: S, env: Env): z.infer<S> {
  const picked: Env = {};
  for (const key of Object.keys(schema.shape)) picked[key] = env[key] === '' ? undefined : env[key];
  const parsed = schema.safeParse(picked);
  if (!parsed.success) {
    // A secret's value is never echoed: the error goes to stderr and the logs.
    const got = (name: string) => (SECRET_NAME.test(name) ? 'a value (hidden)' : JSON.stringify(picked[name]));
    const lines = parsed.error.issues.map((i) => `  ${i.path.join('.')}: ${i.message} (got ${got(String(i.path[0]))})`);
    throw new ConfigError(`invalid configuration:\n${lines.join('\n')}`);
  }
  return parsed.data;
}

export const url = (protocols: string[], fallback?: string) => {
  const s = z.string().refine((v) => {
    try { return protocols.includes(new URL(v).protocol.replace(':', '')); } catch { return false; }
  }, `must be a URL with scheme ${protocols.join(' or ')}`);
  return fallback === undefined ? s.optional() : s.default(fallback);
};
export const int = (fallback: number, min = 0, max = Number.MAX_SAFE_INTEGER) =>
  z.coerce.number().int(`must be an integer`).min(min).max(max).default(fallback);
export const port = (fallback: number) => int(fallback, 0, 65535);

const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;

export const baseSchema = z.object({
  /** production: no simulator, no /_dev route, no development secret (kit/production.ts). Anything else is refused, so a typo never means development. */
  ORDERFLOW_ENV: z.enum(['development', 'production']).default('development'),
  NATS_URL: z.string().default('nats://127.0.0.1:4222'),
  DATABASE_URL: url(['postgres', 'postgresql'], 'postgres://postgres@127.0.0.1:5432/orderflow'),
  /** A streaming replica of DATABASE_URL for read paths that tolerate its replay lag (Deps.readOrm); unset, reads go to DATABASE_URL. */
  DATABASE_READ_URL: url(['postgres', 'postgresql']),
  PORT: port(8080),
  LOG_LEVEL: z.enum(LOG_LEVELS).default('info'),
  TARGET: z.string().default('all'),
  DB_POOL_MAX: int(20, 1, 500),
  SHUTDOWN_TIMEOUT_MS: int(25_000, 1000),
  /** Admission control (kit/http/admission.ts): requests in handlers at once, per process; the next ones wait. */
  HTTP_MAX_INFLIGHT: int(256, 1, 100_000),
  /** Requests that may wait for a slot; beyond it, 503 UNAVAILABLE at once. */
  HTTP_QUEUE_MAX: int(1024, 0, 1_000_000),
  /** The longest a request waits for a slot before its 503 UNAVAILABLE. */
  HTTP_QUEUE_TIMEOUT_MS: int(2000, 1),
  /** While the event loop runs more than this late (ms), new requests get 503 at once; 0 turns it off. */
  HTTP_SHED_LOOP_LAG_MS: int(0, 0, 600_000),
  INSTANCE_ID: z.string().optional(),
  /** Origins allowed to call from a browser, comma-separated (`https://shop.example.com`); none by default. */
  CORS_ORIGINS: z.string().default('').refine((v) => parseOrigins(v).every(isOrigin), 'must be comma-separated origins like https://shop.example.com (scheme, host, optional port; no path, no *)')
    .transform(parseOrigins),
  /** Replicas of every stream at provisioning; 0 keeps streams/ (1). Production: 3. */
  NATS_STREAM_REPLICAS: int(0, 0, 5),
  /** Pyroscope's base URL: when set, every process pushes a CPU profile every PYROSCOPE_PERIOD_S seconds. */
  PYROSCOPE_URL: url(['http', 'https']),
  PYROSCOPE_PERIOD_S: int(10, 1, 300),
  /** Requests per second per principal (token subject), summed over every replica; 0 turns the limit off. */
  RATE_LIMIT_RPS: int(100, 0, 1_000_000),
  /** The most requests a principal may send at once (the bucket's size), summed over every replica. */
  RATE_LIMIT_BURST: int(200, 1, 10_000_000),
  /** Requests per second per client address for calls without a token; 0 turns it off. */
  RATE_LIMIT_ANON_RPS: int(20, 0, 1_000_000),
  /** The anonymous burst; unset, twice RATE_LIMIT_ANON_RPS. */
  RATE_LIMIT_ANON_BURST: int(0, 0, 10_000_000),
  /** Proxies in front whose X-Forwarded-For entries are believed for the client address (1 behind the ingress); 0: the socket's. */
  RATE_LIMIT_TRUSTED_PROXIES: int(0, 0, 10),
  /** Heartbeat of the limiter's share of the cluster; the rate-limit-members bucket's TTL (5 s) must be several of these. */
  RATE_LIMIT_HEARTBEAT_MS: int(1000, 50, 2000),
  /**
   * kit.inbox rows are kept this long after their message was handled; 0 never prunes. The default (45 days) outlives
   * every way a message can come back: a stream keeps it 7 days, and a DLQ entry (30 days) may be redriven to every
   * consumer of its stream (kit/retention.ts). Start-up refuses less than the streams' longest max_age.
   */
  INBOX_RETENTION_HOURS: int(45 * 24, 0, 100 * 365 * 24),
  /** Answered Idempotency-Keys are kept this long (24 h, Stripe's rule; CONTRACTS.md names no lifetime); a key still in progress is never deleted. */
  IDEMPOTENCY_KEY_RETENTION_HOURS: int(24, 1, 100 * 365 * 24),
  /** Seconds between this process's retention passes over kit.inbox and kit.idempotency_keys; 0: this process does not prune. */
  RETENTION_INTERVAL_S: int(300, 0, 86_400),
});

export type BaseConfig = z.infer<typeof baseSchema>;

/** The settings every process needs. `const config = loadBaseConfig(process.env)` */
export function loadBaseConfig(env: Env): BaseConfig {
  return readConfig(baseSchema, env);
}
