// Accounts: registration, look-ups, profile and roles, and the first admin.
import { randomBytes, randomUUID } from 'node:crypto';
import type { EntityManager, MikroORM } from '../kit/index.ts';
import type { Logger } from '../kit/index.ts';
import { hashPassword, verifyPassword } from './passwords.ts';

export const ROLES = ['customer', 'investor', 'reviewer', 'admin'] as const;
export type Role = (typeof ROLES)[number];

export type UserView = { id: string; email: string; name: string; roles: string[]; createdAt: string };
export type UserRow = { id: string; email: string; name: string; password_hash: string; roles: string[] | string; created_at: Date };

export const userView = (r: UserRow): UserView => ({
  id: r.id, email: r.email, name: r.name, roles: typeof r.roles === 'string' ? JSON.parse(r.roles) : r.roles,
  createdAt: new Date(r.created_at).toISOString(),
});

/** Emails compare case-insensitively and without surrounding blanks. */
export const normalizeEmail = (email: string) => email.trim().toLowerCase();

const COLUMNS = 'id, email, name, password_hash, roles, created_at';

/** Insert a user; null when the email is taken. */
export async function createUser(em: EntityManager, u: { email: string; name: string; passwordHash: string; roles: string[] }): Promise<UserView | null> {
  const [r] = await em.execute<UserRow[]>(
    `insert into identity.users (id, email, name, password_hash, roles) values (?, ?, ?, ?, ?)
     on conflict (email) do nothing returning ${COLUMNS}`,
    [randomUUID(), normalizeEmail(u.email), u.name, u.passwordHash, JSON.stringify(u.roles)]);
  return r ? userView(r) : null;
}

export async function findUserByEmail(em: EntityManager, email: string): Promise<UserRow | null> {
  const [r] = await em.execute<UserRow[]>(`select ${COLUMNS} from identity.users where email = ?`, [normalizeEmail(email)]);
  return r ?? null;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export async function findUserById(em: EntityManager, id: string): Promise<UserRow | null> {
  if (!UUID.test(id)) return null;
  const [r] = await em.execute<UserRow[]>(`select ${COLUMNS} from identity.users where id = ?`, [id]);
  return r ?? null;
}

export async function updateUser(em: EntityManager, id: string, set: { name?: string; roles?: string[]; passwordHash?: string }): Promise<UserView | null> {
  const [r] = await em.execute<UserRow[]>(
    `update identity.users set name = coalesce(?, name), roles = coalesce(?::jsonb, roles), password_hash = coalesce(?, password_hash), updated_at = now()
      where id = ? returning ${COLUMNS}`,
    [set.name ?? null, set.roles ? JSON.stringify(set.roles) : null, set.passwordHash ?? null, id]);
  return r ? userView(r) : null;
}

export const encodeUserCursor = (email: string) => Buffer.from(JSON.stringify({ e: email })).toString('base64url');
export function decodeUserCursor(cursor: string): string | null {
  try {
    const v = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
    return typeof v?.e === 'string' && !v.e.includes('\u0000') && v.e.isWellFormed() ? v.e : null;
  } catch { return null; }
}

/** Users in email order, optionally only the one with `email`. */
export async function listUsers(em: EntityManager, o: { email?: string; limit: number; after?: string }): Promise<{ items: UserView[]; nextCursor: string | null }> {
  const where: string[] = [];
  const params: unknown[] = [];
  if (o.email !== undefined) { where.push('email = ?'); params.push(normalizeEmail(o.email)); }
  if (o.after !== undefined) { where.push('email > ?'); params.push(o.after); }
  params.push(o.limit + 1);
  const rows = await em.execute<UserRow[]>(
    `select ${COLUMNS} from identity.users ${where.length ? `where ${where.join(' and ')}` : ''} order by email limit ?`, params);
  const page = rows.slice(0, o.limit);
  return { items: page.map(userView), nextCursor: rows.length > o.limit ? encodeUserCursor(page.at(-1)!.email) : null };
}

/** The documented development admin (README, quick start), used only when ADMIN_EMAIL/ADMIN_PASSWORD are unset outside production. */
export const DEV_ADMIN_EMAIL = 'admin@orderflow.local';
// Documented rather than generated and logged: no password ever reaches a log line.
export const DEV_ADMIN_PASSWORD = 'orderflow-dev-admin';

/**
 * The first admin (CONTRACTS.md): created once from ADMIN_EMAIL/ADMIN_PASSWORD; an existing account
 * keeps its password (and gains nothing). In development with neither set, admin@orderflow.local with
 * the documented development password; in production without them, no admin is made.
 */
export async function ensureFirstAdmin(orm: MikroORM, log: Logger, o: { email?: string; password?: string; production: boolean }): Promise<void> {
  let email = o.email;
  let password = o.password;
  let generated = false;
  if (o.production) await retireDevAdmin(orm, log, o);
  if (!email || !password) {
    if (o.production) { log.warn('ADMIN_EMAIL/ADMIN_PASSWORD unset: no first admin is created'); return; }
    email = DEV_ADMIN_EMAIL;
    password = DEV_ADMIN_PASSWORD;
    generated = true;
  }
  const em = orm.em.fork();
  if (await findUserByEmail(em, email)) return;
  const created = await createUser(em, { email, name: 'Administrator', passwordHash: await hashPassword(password), roles: ['admin'] });
  if (!created) return; // another replica created it a moment ago
  if (generated) {
    log.warn({ email }, 'development admin created with the documented development password (ADMIN_EMAIL/ADMIN_PASSWORD unset; see the README); set both for anything but a laptop');
  } else {
    log.info({ email }, 'first admin created from ADMIN_EMAIL');
  }
}

/**
 * The development admin never exists in production: a database that served development keeps
 * the account with its published password, so production takes that password away (a random
 * one nobody knows) and its roles. Named by ADMIN_EMAIL, it is the first admin: it gets
 * ADMIN_PASSWORD and keeps its roles.
 */
async function retireDevAdmin(orm: MikroORM, log: Logger, o: { email?: string; password?: string }): Promise<void> {
  const em = orm.em.fork();
  const dev = await findUserByEmail(em, DEV_ADMIN_EMAIL);
  if (!dev || !(await verifyPassword(DEV_ADMIN_PASSWORD, dev.password_hash))) return;
  const named = o.email !== undefined && o.password !== undefined && normalizeEmail(o.email) === DEV_ADMIN_EMAIL;
  await updateUser(em, dev.id, named
    ? { passwordHash: await hashPassword(o.password!) }
    : { passwordHash: await hashPassword(randomBytes(32).toString('base64url')), roles: [] });
  log.warn({ email: DEV_ADMIN_EMAIL }, named
    ? 'production: the development admin still had the documented password; it now has ADMIN_PASSWORD'
    : 'production: the development admin still had the documented password; its password and roles are gone');
}
