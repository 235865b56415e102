// Identity: accounts, logins and refresh-token families, machine clients (OAuth 2.0
// client credentials), and the signing keys behind every access token (JWKS).
import { randomBytes } from 'node:crypto';
import { createVerifier, remoteJwks, type Verifier } from '../kit/index.ts';
import type { MikroORM } from '../kit/index.ts';
import { defineModule } from '../kit/index.ts';
import type { Deps, Running } from '../kit/index.ts';
import { LOGIN_WINDOW_S, loadIdentityConfig, loadVerifierConfig } from './config.ts';
import { entities, migrations } from './entities.ts';
import { createKeyRing, publicationWindowS, publishedJwks } from './keys.ts';
import { createLockout } from './lockout.ts';
import { hashPassword } from './passwords.ts';
import { identityRoutes } from './routes.ts';
import { ensureFirstAdmin } from './users.ts';

export { entities, migrations };

export async function start({ app, routes, orm, env, log, metrics }: Deps): Promise<Running> {
  const config = loadIdentityConfig(env);
  if (config.devKek) {
    log.warn('KEY_ENCRYPTION_KEY unset: signing keys are encrypted with the built-in INSECURE development key; set KEY_ENCRYPTION_KEY (openssl rand -base64 32) anywhere that matters');
  }
  const keys = createKeyRing({
    orm, kek: config.kek, log, issuer: config.IDENTITY_ISSUER, audience: config.IDENTITY_AUDIENCE,
    accessTtlS: config.IDENTITY_ACCESS_TOKEN_TTL_S, maxAgeS: config.IDENTITY_KEY_MAX_AGE_S,
    checkMs: config.IDENTITY_KEY_CHECK_MS, publishLeadS: config.IDENTITY_KEY_PUBLISH_LEAD_S,
  });
  await keys.start();
  await ensureFirstAdmin(orm, log, { email: config.ADMIN_EMAIL, password: config.ADMIN_PASSWORD, production: config.production });
  const lockout = createLockout({ orm, log, maxAttempts: config.LOGIN_MAX_ATTEMPTS, windowS: LOGIN_WINDOW_S });
  const dummyHash = await hashPassword(randomBytes(16).toString('base64url'));

  app.formBodies.add('/api/auth/token');
  identityRoutes(routes, { orm, config, keys, lockout, dummyHash, onLimited: () => metrics.rateLimitRejections.inc({ scope: 'login' }) });
  return { async stop() { keys.stop(); } };
}

/**
 * A verifier for another module of the same process, reading identity's keys from Postgres (no
 * HTTP): its module must list `identity` in `needs.schemas`. Across processes use
 * `createVerifier({ …, jwks: remoteJwks(IDENTITY_URL) })` from kit/auth.ts.
 * `const verifier = localVerifier(deps.orm, deps.env)`
 */
export function localVerifier(orm: MikroORM, env: Deps['env']): Verifier {
  const config = loadVerifierConfig(env);
  return createVerifier({
    issuer: config.IDENTITY_ISSUER, audience: config.IDENTITY_AUDIENCE, cooldownMs: 1000,
    jwks: () => publishedJwks(orm, publicationWindowS(config)),
  });
}

/**
 * The verifier of a process (main.ts hands it to the runtime): identity's JWKS over HTTP when
 * IDENTITY_URL is set (targets apart from identity, in their own database), else identity's
 * published keys read from the shared database (one process, or targets sharing DATABASE_URL).
 * Either way the set is cached and verification is local. `processVerifier(deps.orm, deps.env)`
 */
export function processVerifier(orm: MikroORM, env: Deps['env']): Verifier {
  if (!env.IDENTITY_URL) return localVerifier(orm, env);
  const config = loadVerifierConfig(env);
  return createVerifier({ issuer: config.IDENTITY_ISSUER, audience: config.IDENTITY_AUDIENCE, jwks: remoteJwks(env.IDENTITY_URL) });
}

/** The `identity` target. Needs nothing but its own schema: no events, no external systems. */
export const module = defineModule({
  name: 'identity', schema: 'identity', entities, migrations, start,
  needs: { schemas: [], outboxRelay: false, dlqMover: false, externals: [], secrets: ['KEY_ENCRYPTION_KEY', 'ADMIN_EMAIL', 'ADMIN_PASSWORD'] },
});
