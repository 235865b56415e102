// Sealing: authenticated encryption (AES-256-GCM) of a short secret, so that it can
// travel through streams, DLQ copies, tables and logs in a form only a holder of the key
// can open. Payment tokens are sealed by orders at intake and opened by payments right
// before the gateway call; every hop in between carries the sealed text.
//
// Format: `v1.<keyId>.<iv>.<ciphertext>.<tag>`, each part base64url. The keyId (a hash
// of the key, not the key) says which key sealed it, so keys rotate: the first key of
// PAYMENT_TOKEN_KEY seals, every key listed opens. `v1.<keyId>` is authenticated too
// (GCM additional data), so a sealed value cannot be relabelled.
//
// No error message or log line made here ever contains the plaintext, the sealed text
// or a key.
import { createCipheriv, createDecipheriv, createHash, createSecretKey, randomBytes, type KeyObject } from 'node:crypto';
import { z } from 'zod';
import { readConfig } from './config.ts';
import { ConfigError } from './errors.ts';
import type { Logger } from './log.ts';

const VERSION = 'v1';
const KEY_BYTES = 32;
const IV_BYTES = 12;
const B64URL = '[A-Za-z0-9_-]';
const SEALED = new RegExp(`^${VERSION}\\.(${B64URL}+)\\.(${B64URL}+)\\.(${B64URL}*)\\.(${B64URL}+)$`);

/** A value that does not open: not sealed, sealed with a key we lack, or tampered with. `try { s.open(v) } catch (e) { if (e instanceof SealError) ... }` */
export class SealError extends Error {
  override name = 'SealError';
}

/** Seals with the first key, opens with any. `const s: Sealer = createSealer([key]); s.open(s.seal('tok_visa'))` */
export type Sealer = {
  /** The id of the key that seals (safe to log). */
  keyId: string;
  seal(plain: string): string;
  /** Throws SealError when the value does not open. */
  open(sealed: string): string;
};

/** True when `value` has the shape of a sealed value (says nothing about whether it opens). `looksSealed('v1.k.i.c.t') === true` */
export const looksSealed = (value: string): boolean => SEALED.test(value);

const keyIdOf = (key: Buffer) => createHash('sha256').update('orderflow-seal-key-id\0').update(key).digest('base64url').slice(0, 10);

/** A sealer over one or more 32-byte keys: the first seals, all open. `const s = createSealer([key]); s.open(s.seal('tok_visa'))` */
export function createSealer(keys: Buffer[]): Sealer {
  if (!keys.length) throw new ConfigError('a sealer needs at least one key');
  for (const k of keys) if (k.length !== KEY_BYTES) throw new ConfigError(`a seal key must be ${KEY_BYTES} bytes`);
  // KeyObjects made once, and IVs cut from a pooled random buffer (each slice used once):
  // a raw key becomes a KeyObject on every call, and a 12-byte randomBytes is a syscall, which
  // together made a seal cost ~25 µs, a sixth of the intake process's busy time in
  // bench:intake; this way ~5 µs (a node loop of 200,000 seals).
  const byId = new Map(keys.map((k) => [keyIdOf(k), createSecretKey(k)] as const));
  const keyId = keyIdOf(keys[0]!);
  const sealKey: KeyObject = byId.get(keyId)!;
  const aad = Buffer.from(`${VERSION}.${keyId}`);
  let ivPool = Buffer.alloc(0);
  let ivAt = 0;
  const nextIv = () => {
    if (ivAt + IV_BYTES > ivPool.length) { ivPool = randomBytes(IV_BYTES * 256); ivAt = 0; }
    return ivPool.subarray(ivAt, (ivAt += IV_BYTES));
  };
  return {
    keyId,
    seal(plain) {
      const iv = nextIv();
      const cipher = createCipheriv('aes-256-gcm', sealKey, iv);
      cipher.setAAD(aad);
      const ct = Buffer.concat([cipher.update(plain, 'utf8'), cipher.final()]);
      return [VERSION, keyId, iv.toString('base64url'), ct.toString('base64url'), cipher.getAuthTag().toString('base64url')].join('.');
    },
    open(sealed) {
      const m = SEALED.exec(sealed);
      if (!m) throw new SealError('not a sealed value');
      const [, id, iv, ct, tag] = m as unknown as [string, string, string, string, string];
      const key = byId.get(id);
      if (!key) throw new SealError(`sealed with an unknown key (key id ${id})`);
      try {
        const decipher = createDecipheriv('aes-256-gcm', key, Buffer.from(iv, 'base64url'));
        decipher.setAAD(Buffer.from(`${VERSION}.${id}`));
        decipher.setAuthTag(Buffer.from(tag, 'base64url'));
        return Buffer.concat([decipher.update(Buffer.from(ct, 'base64url')), decipher.final()]).toString('utf8');
      } catch (err) {
        // The cause (OpenSSL's "unsupported state or unable to authenticate data") holds no secret.
        throw new SealError(`does not open with key ${id}: tampered with, or sealed with another key of that id`, { cause: err });
      }
    },
  };
}

// Not secret by design: development and tests work without configuration, and anything
// sealed with it is as good as clear. Production refuses to start without a real key.
const DEV_KEY_LABEL = 'orderflow DEVELOPMENT payment token key: public, never for real cards';
const devKey = () => createHash('sha256').update(DEV_KEY_LABEL).digest();

const keyList = z.string().optional().superRefine((v, ctx) => {
  if (v === undefined) return;
  const parts = v.split(',').map((s) => s.trim());
  // Says which entry is wrong, never what it holds.
  parts.forEach((p, i) => {
    const bytes = /^[A-Za-z0-9+/_-]+={0,2}$/.test(p) ? Buffer.from(p, 'base64') : Buffer.alloc(0);
    if (bytes.length !== KEY_BYTES) ctx.addIssue({ code: 'custom', message: `entry ${i + 1} must be ${KEY_BYTES} random bytes in base64 (openssl rand -base64 32)` });
  });
});

const schema = z.object({
  PAYMENT_TOKEN_KEY: keyList,
  ORDERFLOW_ENV: z.string().default('development'),
});

/**
 * The payment token sealer from PAYMENT_TOKEN_KEY (base64 32-byte keys, comma-separated;
 * the first seals, all open). Unset: ConfigError in production, else the development
 * key with one warning. `const sealer = paymentTokenSealer(deps.env, deps.log)`
 */
export function paymentTokenSealer(env: Record<string, string | undefined>, log: Logger): Sealer {
  const c = readConfig(schema, env);
  if (c.PAYMENT_TOKEN_KEY === undefined) {
    if (c.ORDERFLOW_ENV === 'production') {
      throw new ConfigError('invalid configuration:\n  PAYMENT_TOKEN_KEY: required when ORDERFLOW_ENV=production (32 random bytes in base64; openssl rand -base64 32)');
    }
    const sealer = createSealer([devKey()]);
    log.warn({ keyId: sealer.keyId }, 'PAYMENT_TOKEN_KEY unset: payment tokens are sealed with the built-in DEVELOPMENT key, which is not secret; set PAYMENT_TOKEN_KEY before handling real cards');
    return sealer;
  }
  return createSealer(c.PAYMENT_TOKEN_KEY.split(',').map((p) => Buffer.from(p.trim(), 'base64')));
}
