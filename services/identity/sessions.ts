// Refresh tokens (RFC 9700 §4.14): opaque random values, stored as their sha256, rotated
// on every use. Each login starts a family; every token a refresh hands out joins it.
// A token presented a second time means it leaked (or its holder raced itself): the whole
// family is revoked, so whoever holds the newest descendant is logged out as well.
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import type { EntityManager, MikroORM } from '../kit/index.ts';

// 32 random bytes: guessing is hopeless, so a fast hash is enough to make a stolen table useless.
export const newOpaqueToken = () => randomBytes(32).toString('base64url');
export const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');

/** Start a family for a login; returns its first refresh token. */
export async function startFamily(em: EntityManager, userId: string, ttlS: number): Promise<string> {
  const familyId = randomUUID();
  await em.execute(`insert into identity.refresh_families (id, user_id) values (?, ?)`, [familyId, userId]);
  return await addToken(em, familyId, ttlS);
}

async function addToken(em: EntityManager, familyId: string, ttlS: number): Promise<string> {
  const token = newOpaqueToken();
  await em.execute(`insert into identity.refresh_tokens (token_hash, family_id, expires_at) values (?, ?, now() + make_interval(secs => ?))`,
    [sha256(token), familyId, ttlS]);
  return token;
}

export type RefreshOutcome =
  | { ok: true; userId: string; refreshToken: string }
  | { ok: false; reason: 'unknown' | 'reused' | 'revoked' | 'expired' };

/**
 * Spend a refresh token: mark it used and hand out its successor in the same family. Marking
 * is a compare-and-set, so of two concurrent uses exactly one wins and the other counts as reuse.
 */
export async function rotateRefreshToken(orm: MikroORM, token: string, ttlS: number): Promise<RefreshOutcome> {
  const hash = sha256(token);
  const outcome = await orm.em.fork().transactional(async (em): Promise<RefreshOutcome> => {
    const [spent] = await em.execute<{ family_id: string; expired: boolean; user_id: string; revoked: boolean }[]>(
      `update identity.refresh_tokens t set used_at = now() from identity.refresh_families f
        where t.token_hash = ? and t.used_at is null and f.id = t.family_id
        returning t.family_id, t.expires_at <= now() as expired, f.user_id, f.revoked_at is not null as revoked`, [hash]);
    if (!spent) {
      const [known] = await em.execute<{ family_id: string }[]>(`select family_id from identity.refresh_tokens where token_hash = ?`, [hash]);
      return { ok: false, reason: known ? 'reused' : 'unknown' };
    }
    if (spent.revoked) return { ok: false, reason: 'revoked' };
    if (spent.expired) return { ok: false, reason: 'expired' };
    return { ok: true, userId: spent.user_id, refreshToken: await addToken(em, spent.family_id, ttlS) };
  });
  // Outside the transaction above, which found nothing to change: the revocation must commit.
  if (!outcome.ok && outcome.reason === 'reused') await revokeFamilyOf(orm.em.fork(), token, 'refresh token reused');
  return outcome;
}

/** Revoke the family a refresh token belongs to; false when the token is unknown. */
export async function revokeFamilyOf(em: EntityManager, token: string, reason: string): Promise<boolean> {
  const rows = await em.execute<{ id: string }[]>(
    `update identity.refresh_families f set revoked_at = coalesce(f.revoked_at, now()), revoked_reason = coalesce(f.revoked_reason, ?)
      from identity.refresh_tokens t where t.token_hash = ? and f.id = t.family_id returning f.id`, [reason, sha256(token)]);
  return rows.length > 0;
}

/** Revoke every family of a user (a password change). */
export async function revokeAllFamilies(em: EntityManager, userId: string, reason: string): Promise<number> {
  const rows = await em.execute<{ id: string }[]>(
    `update identity.refresh_families set revoked_at = now(), revoked_reason = ? where user_id = ? and revoked_at is null returning id`, [reason, userId]);
  return rows.length;
}
