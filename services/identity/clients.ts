// Machine clients (OAuth 2.0 client credentials, RFC 6749 §4.4).
import { randomBytes, timingSafeEqual } from 'node:crypto';
import type { EntityManager } from '../kit/index.ts';
import { sha256 } from './sessions.ts';

export const SCOPES = ['orders:write', 'orders:read', 'catalog:write', 'inventory:write', 'lending:write', 'lending:read',
  'funding:write', 'funding:read', 'funding:decide', 'admin'] as const;

/** Create a client; the secret is returned here once and only its hash is kept. */
export async function createClient(em: EntityManager, name: string, scopes: string[]): Promise<{ clientId: string; clientSecret: string; name: string; scopes: string[] }> {
  const clientId = `cl_${randomBytes(12).toString('base64url')}`;
  const clientSecret = randomBytes(32).toString('base64url');
  // 256 random bits cannot be guessed or looked up, so sha256 protects a leaked table as well
  // as a slow hash would, and a token request costs microseconds instead of an Argon2 run.
  await em.execute(`insert into identity.clients (client_id, secret_hash, name, scopes) values (?, ?, ?, ?)`,
    [clientId, sha256(clientSecret), name, JSON.stringify(scopes)]);
  return { clientId, clientSecret, name, scopes };
}

/** The client's scopes when id and secret match; null otherwise. */
export async function authenticateClient(em: EntityManager, clientId: string, secret: string): Promise<{ clientId: string; scopes: string[] } | null> {
  const [row] = await em.execute<{ secret_hash: string; scopes: string[] | string }[]>(
    `select secret_hash, scopes from identity.clients where client_id = ?`, [clientId]);
  const given = Buffer.from(sha256(secret), 'hex');
  // Compare even for an unknown id, so the answer takes the same time.
  const stored = Buffer.from(row?.secret_hash ?? '00'.repeat(32), 'hex');
  if (!timingSafeEqual(given, stored) || !row) return null;
  return { clientId, scopes: typeof row.scopes === 'string' ? JSON.parse(row.scopes) : row.scopes };
}
