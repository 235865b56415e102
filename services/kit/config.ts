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
  INSTANCE_ID: z.string().optional(),
  /** Origins allowed to call from a browser, comma-separated (`https://shop.example.com`); none by default. */
  CORS_ORIGINS: z.string().default('').refine((v) => parseOrigins(v).every(isOrigin), 'must be comma-separated origins like https://shop.example.com (scheme, host, optional port; no path, no *)')
    .transform(parseOrigins),
  /** Replicas of every stream at provisioning; 0 keeps streams/ (1). Production: 3. */
  NATS_STREAM_REPLICAS: int(0, 0, 5),
});

export type BaseConfig = z.infer<typeof baseSchema>;

/** The settings every process needs. `const config = loadBaseConfig(process.env)` */
export function loadBaseConfig(env: Env): BaseConfig {
  return readConfig(baseSchema, env);
}
