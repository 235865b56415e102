// Identity's settings (IDENTITY_*, and the contract's KEY_ENCRYPTION_KEY, ADMIN_EMAIL,
// ADMIN_PASSWORD, LOGIN_MAX_ATTEMPTS), validated at boot.
import { createHash } from 'node:crypto';
import { z } from 'zod';
import { int, readConfig } from '../kit/index.ts';
import { ConfigError } from '../kit/index.ts';
import type { Env } from '../kit/index.ts';

const schema = z.object({
  ORDERFLOW_ENV: z.enum(['development', 'production']).default('development'),
  /** `iss` of every access token, and what verifiers require. */
  IDENTITY_ISSUER: z.string().min(1).default('orderflow-identity'),
  /** `aud` of every access token, and what verifiers require. */
  IDENTITY_AUDIENCE: z.string().min(1).default('orderflow'),
  IDENTITY_ACCESS_TOKEN_TTL_S: int(600, 30, 3600),
  IDENTITY_REFRESH_TOKEN_TTL_S: int(30 * 86_400, 60),
  /** A signing key older than this is replaced by a new one (the old stays published until its tokens expired). */
  IDENTITY_KEY_MAX_AGE_S: int(7 * 86_400, 60),
  /** How often each replica checks the key's age and reloads the key ring (another replica may have rotated). */
  IDENTITY_KEY_CHECK_MS: int(60_000, 50),
  /** A new key is published this long before it signs; keep it above verifiers' JWKS refetch cooldown (30 s). */
  IDENTITY_KEY_PUBLISH_LEAD_S: int(60, 0, 3600),
  KEY_ENCRYPTION_KEY: z.string().optional(),
  ADMIN_EMAIL: z.string().optional(),
  ADMIN_PASSWORD: z.string().optional(),
  LOGIN_MAX_ATTEMPTS: int(10, 1, 10_000),
});

/** What a verifier in any process needs of identity's settings (no secret: a process without identity reads these only). */
export const loadVerifierConfig = (env: Env) =>
  readConfig(schema.pick({ IDENTITY_ISSUER: true, IDENTITY_AUDIENCE: true, IDENTITY_ACCESS_TOKEN_TTL_S: true, IDENTITY_KEY_CHECK_MS: true }), env);

export type IdentityConfig = Omit<z.infer<typeof schema>, 'KEY_ENCRYPTION_KEY'> & {
  /** 32 bytes for AES-256-GCM (the first 32 of KEY_ENCRYPTION_KEY, or the development key). */
  kek: Buffer;
  /** True when no KEY_ENCRYPTION_KEY was given and the development key stands in. */
  devKek: boolean;
  production: boolean;
};

/** Login failures are counted in windows of this length (CONTRACTS.md: per 15 minutes). */
export const LOGIN_WINDOW_S = 15 * 60;

// Deliberately public: in development the signing keys are only as secret as this repository.
const DEV_KEK_LABEL = 'orderflow INSECURE development key-encryption key (set KEY_ENCRYPTION_KEY)';

/** `const config = loadIdentityConfig(deps.env)`; in production a missing KEY_ENCRYPTION_KEY is a ConfigError. */
export function loadIdentityConfig(env: Env): IdentityConfig {
  const c = readConfig(schema, env);
  const production = c.ORDERFLOW_ENV === 'production';
  const problems: string[] = [];
  let kek: Buffer | undefined;
  if (c.KEY_ENCRYPTION_KEY) {
    const raw = /^[A-Za-z0-9+/]+={0,2}$/.test(c.KEY_ENCRYPTION_KEY) ? Buffer.from(c.KEY_ENCRYPTION_KEY, 'base64') : Buffer.alloc(0);
    if (raw.length < 32) problems.push('  KEY_ENCRYPTION_KEY: must be at least 32 random bytes, base64 (e.g. `openssl rand -base64 32`)');
    else kek = raw.subarray(0, 32);
  } else if (production) {
    problems.push('  KEY_ENCRYPTION_KEY: required when ORDERFLOW_ENV=production (at least 32 random bytes, base64); it encrypts the signing keys at rest');
  }
  if (Boolean(c.ADMIN_EMAIL) !== Boolean(c.ADMIN_PASSWORD)) problems.push('  ADMIN_EMAIL and ADMIN_PASSWORD: set both or neither');
  if (c.ADMIN_PASSWORD && (c.ADMIN_PASSWORD.length < 10 || c.ADMIN_PASSWORD.length > 128)) problems.push('  ADMIN_PASSWORD: must be 10 to 128 characters');
  if (problems.length) throw new ConfigError(`invalid configuration:\n${problems.join('\n')}`);
  const { KEY_ENCRYPTION_KEY: _, ...rest } = c;
  return { ...rest, production, kek: kek ?? createHash('sha256').update(DEV_KEK_LABEL).digest(), devKek: !kek };
}
