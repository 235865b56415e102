// Identity's tables. Every secret here is stored hashed (passwords with Argon2id; refresh
// tokens and client secrets, which are high-entropy random values, with sha256) or
// encrypted (signing keys' private halves, AES-256-GCM under KEY_ENCRYPTION_KEY).
import { defineEntity, p } from '@mikro-orm/core';

export const User = defineEntity({
  name: 'IdentityUser',
  schema: 'identity',
  tableName: 'users',
  properties: {
    id: p.uuid().primary(),
    // Stored lower-cased, so the unique index is the one place that decides EMAIL_TAKEN.
    email: p.text().unique('users_email_key'),
    name: p.text(),
    /** PHC string: $argon2id$v=19$m=…,t=…,p=…$salt$hash */
    passwordHash: p.text(),
    roles: p.json<string[]>(),
    createdAt: p.datetime().defaultRaw('now()'),
    updatedAt: p.datetime().defaultRaw('now()'),
  },
});

/** One login: every refresh token descended from it shares the family, and dies with it. */
export const RefreshFamily = defineEntity({
  name: 'IdentityRefreshFamily',
  schema: 'identity',
  tableName: 'refresh_families',
  properties: {
    id: p.uuid().primary(),
    userId: p.uuid(),
    createdAt: p.datetime().defaultRaw('now()'),
    revokedAt: p.datetime().nullable(),
    revokedReason: p.text().nullable(),
  },
  indexes: [{ name: 'refresh_families_user_id', properties: ['userId'] }],
});

export const RefreshToken = defineEntity({
  name: 'IdentityRefreshToken',
  schema: 'identity',
  tableName: 'refresh_tokens',
  properties: {
    /** sha256 (hex) of the token; the token itself is never stored. */
    tokenHash: p.text().primary(),
    familyId: p.uuid(),
    createdAt: p.datetime().defaultRaw('now()'),
    expiresAt: p.datetime(),
    usedAt: p.datetime().nullable(),
  },
  indexes: [{ name: 'refresh_tokens_family_id', properties: ['familyId'] }],
});

export const Client = defineEntity({
  name: 'IdentityClient',
  schema: 'identity',
  tableName: 'clients',
  properties: {
    clientId: p.text().primary(),
    /** sha256 (hex) of the secret. */
    secretHash: p.text(),
    name: p.text(),
    scopes: p.json<string[]>(),
    createdAt: p.datetime().defaultRaw('now()'),
  },
});

export const SigningKey = defineEntity({
  name: 'IdentitySigningKey',
  schema: 'identity',
  tableName: 'signing_keys',
  properties: {
    kid: p.text().primary(),
    alg: p.text(),
    publicJwk: p.json<Record<string, unknown>>(),
    /** base64 of iv (12) | GCM tag (16) | ciphertext of the PKCS#8 DER private key. */
    privateKeyEnc: p.text(),
    createdAt: p.datetime().defaultRaw('now()'),
    /** When a newer key took over signing; published until every token it signed has expired. */
    retiredAt: p.datetime().nullable(),
  },
});

/** Login failures per account in a fixed 15-minute window, in Postgres so the limit holds across replicas. */
export const LoginAttempt = defineEntity({
  name: 'IdentityLoginAttempt',
  schema: 'identity',
  tableName: 'login_attempts',
  properties: {
    email: p.text().primary(),
    windowStart: p.datetime(),
    failures: p.integer(),
  },
});

export const entities = [User, RefreshFamily, RefreshToken, Client, SigningKey, LoginAttempt];

export { migrations } from './migrations/index.ts';
