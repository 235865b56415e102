// The signing key ring. Ed25519 keys live in identity.signing_keys, the private half
// encrypted with AES-256-GCM under KEY_ENCRYPTION_KEY (the kid is the GCM additional
// data, so a ciphertext copied onto another row does not decrypt).
//
// Rotation logs no one out: a new key is published at once but signs only after
// `publishLeadS` (so verifiers that cached the JWKS a moment ago meet its kid only after
// they may refetch), and the key it replaces stays published until every token it can
// have signed has expired (access TTL + one check interval, during which a replica that
// has not reloaded may still sign with it, + a minute of clock skew).
import { createCipheriv, createDecipheriv, createPrivateKey, generateKeyPair, randomBytes, type KeyObject } from 'node:crypto';
import { promisify } from 'node:util';
import { calculateJwkThumbprint, SignJWT, type JSONWebKeySet, type JWK } from 'jose';
import type { MikroORM } from '../kit/index.ts';
import type { Logger } from '../kit/index.ts';

const generateEd25519 = promisify(generateKeyPair);
export const SIGNING_ALG = 'EdDSA';
const SKEW_S = 60;

/** A stored private key that does not decrypt: the wrong KEY_ENCRYPTION_KEY, or a tampered row. */
export class KeyDecryptionError extends Error {
  override name = 'KeyDecryptionError';
}

/** AES-256-GCM; the result is base64 of iv | tag | ciphertext. `sealKey(kek, der, kid)` */
export function sealKey(kek: Buffer, plaintext: Buffer, aad: string): string {
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', kek, iv);
  cipher.setAAD(Buffer.from(aad));
  const ct = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  return Buffer.concat([iv, cipher.getAuthTag(), ct]).toString('base64');
}

/** The inverse of sealKey; throws KeyDecryptionError when the key or the data is wrong. */
export function openKey(kek: Buffer, sealed: string, aad: string): Buffer {
  const raw = Buffer.from(sealed, 'base64');
  try {
    const decipher = createDecipheriv('aes-256-gcm', kek, raw.subarray(0, 12));
    decipher.setAAD(Buffer.from(aad));
    decipher.setAuthTag(raw.subarray(12, 28));
    return Buffer.concat([decipher.update(raw.subarray(28)), decipher.final()]);
  } catch (err) {
    throw new KeyDecryptionError(`signing key ${aad} does not decrypt: is KEY_ENCRYPTION_KEY the one it was stored with?`, { cause: err });
  }
}

export type KeyRingOptions = {
  orm: MikroORM;
  kek: Buffer;
  log: Logger;
  issuer: string;
  audience: string;
  accessTtlS: number;
  maxAgeS: number;
  checkMs: number;
  /** A new key is published this long before it signs; keep it above verifiers' JWKS refetch cooldown. */
  publishLeadS: number;
};

export type KeyRing = ReturnType<typeof createKeyRing>;

/** The keys a verifier must know: those not retired, or retired less than `publishedForS` ago. */
export async function publishedJwks(orm: MikroORM, publishedForS: number): Promise<JSONWebKeySet> {
  const rows = await orm.em.fork().execute<{ public_jwk: JWK | string }[]>(
    `select public_jwk from identity.signing_keys where retired_at is null or retired_at > now() - make_interval(secs => ?) order by created_at desc`, [publishedForS]);
  return { keys: rows.map((r) => (typeof r.public_jwk === 'string' ? JSON.parse(r.public_jwk) : r.public_jwk)) };
}

/** How long a retired key stays published (access TTL + one check interval + skew), from identity's config. */
export const publicationWindowS = (c: { IDENTITY_ACCESS_TOKEN_TTL_S: number; IDENTITY_KEY_CHECK_MS: number }) =>
  c.IDENTITY_ACCESS_TOKEN_TTL_S + Math.ceil(c.IDENTITY_KEY_CHECK_MS / 1000) + SKEW_S;

type KeyRow = { kid: string; private_key_enc: string };

/** `const keys = createKeyRing({ orm, kek, … }); await keys.start(); await keys.sign({ sub, roles })` */
export function createKeyRing(o: KeyRingOptions) {
  let current: { kid: string; key: KeyObject } | undefined;
  let timer: NodeJS.Timeout | undefined;
  const publishedFor = publicationWindowS({ IDENTITY_ACCESS_TOKEN_TTL_S: o.accessTtlS, IDENTITY_KEY_CHECK_MS: o.checkMs });

  /** Pick the key that signs now: the newest past its publication lead (or, on a first start, the only one). */
  async function reload(): Promise<void> {
    const [row] = await o.orm.em.fork().execute<KeyRow[]>(
      `select kid, private_key_enc from identity.signing_keys where retired_at is null or retired_at > now()
        order by (created_at <= now() - make_interval(secs => ?)) desc, created_at desc limit 1`, [o.publishLeadS]);
    if (!row) { current = undefined; return; }
    if (current?.kid === row.kid) return;
    const der = openKey(o.kek, row.private_key_enc, row.kid);
    current = { kid: row.kid, key: createPrivateKey({ key: der, format: 'der', type: 'pkcs8' }) };
    o.log.info({ kid: row.kid }, 'signing with key');
  }

  /**
   * Add a new key when the newest is older than maxAgeS (or there is none, or `force`).
   * Replicas serialize on an advisory lock, so two that decide at once add one key.
   * Returns the new kid, or null when none was needed.
   */
  async function rotate(opts: { force?: boolean } = {}): Promise<string | null> {
    const kid = await o.orm.em.fork().transactional(async (em) => {
      await em.execute(`select pg_advisory_xact_lock(hashtext('identity.signing_keys'))`);
      const [newest] = await em.execute<{ age: number }[]>(
        `select extract(epoch from now() - created_at)::float8 as age from identity.signing_keys order by created_at desc limit 1`);
      if (newest && !opts.force && newest.age < o.maxAgeS) return null;
      const { publicKey, privateKey } = await generateEd25519('ed25519');
      const jwk = publicKey.export({ format: 'jwk' }) as JWK;
      const kid = await calculateJwkThumbprint(jwk);
      const sealed = sealKey(o.kek, privateKey.export({ format: 'der', type: 'pkcs8' }), kid);
      await em.execute(`insert into identity.signing_keys (kid, alg, public_jwk, private_key_enc) values (?, ?, ?, ?)`,
        [kid, SIGNING_ALG, JSON.stringify({ ...jwk, kid, alg: SIGNING_ALG, use: 'sig' }), sealed]);
      // The keys it replaces stop signing when it starts.
      await em.execute(`update identity.signing_keys set retired_at = now() + make_interval(secs => ?) where retired_at is null and kid <> ?`, [o.publishLeadS, kid]);
      // Private keys no token can need any more go for good.
      await em.execute(`delete from identity.signing_keys where retired_at < now() - make_interval(secs => ?)`, [publishedFor * 2]);
      return kid;
    });
    if (kid) o.log.info({ kid, forced: Boolean(opts.force) }, 'signing key rotated in');
    await reload();
    return kid;
  }

  /** The JWKS: every key that signs, will sign, or signed a token that may still be valid. */
  const jwks = () => publishedJwks(o.orm, publishedFor);

  /** Sign an access token. `await keys.sign({ roles: ['customer'] }, userId)` */
  async function sign(claims: Record<string, unknown>, sub: string): Promise<{ token: string; expiresIn: number }> {
    if (!current) await reload();
    if (!current) throw new Error('no signing key: the key ring was not started');
    const token = await new SignJWT(claims)
      .setProtectedHeader({ alg: SIGNING_ALG, kid: current.kid, typ: 'at+jwt' })
      .setIssuer(o.issuer).setAudience(o.audience).setSubject(sub)
      .setIssuedAt().setExpirationTime(`${o.accessTtlS}s`).setJti(randomBytes(16).toString('base64url'))
      .sign(current.key);
    return { token, expiresIn: o.accessTtlS };
  }

  return {
    rotate, jwks, sign, reload,
    /** Create the first key if there is none, then check age and reload every checkMs. */
    async start() {
      await rotate();
      const tick = () => { rotate().catch((err) => o.log.error({ err }, 'signing key check failed')); };
      timer = setInterval(tick, o.checkMs);
      timer.unref();
    },
    stop() { clearInterval(timer); },
    get currentKid() { return current?.kid; },
  };
}
