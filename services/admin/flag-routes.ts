// Feature flag administration over HTTP (CONTRACTS.md "Feature flags"). Reads come from
// the process's in-memory copy of the bucket; a PUT is a compare-and-set on the flag's KV
// revision with its audit row (who, when, before, after) in one database transaction, so
// of two concurrent PUTs one wins, the other reads the winner's definition as its `before`
// and writes again: both are audited, and the audit chain has no gap.
import { randomUUID } from 'node:crypto';
import { z } from 'zod';
import { FlagList, FlagView, FlagWithHistory } from '../../contracts/http.ts';
import { FlagConflictError, FlagKey, FlagSpec, type Flag, type FlagStore, type StoredFlag } from '../kit/index.ts';
import { HttpError, notFound, validate, type MikroORM, type Routes } from '../kit/index.ts';
import { FlagChange } from './entities.ts';
import { ADMIN } from './routes.ts';

/** How many changes `GET /api/admin/flags/{key}` returns, newest first. */
export const HISTORY_LIMIT = 20;
const MAX_ATTEMPTS = 10;

export type FlagChangeView = { at: string; actor: string; revision: number; before: StoredFlag | null; after: StoredFlag };

const view = ({ revision, ...f }: Flag) => ({ ...f, revision });

/**
 * Write a flag and its audit row; retried from a fresh read when another writer got there
 * first. `await changeFlag({ store, orm }, 'funding.riskModel', spec, 'alice')`
 */
export async function changeFlag({ store, orm }: { store: FlagStore; orm: MikroORM }, key: string, spec: FlagSpec, actor: string): Promise<{ flag: Flag; before: StoredFlag | null }> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await orm.em.fork().transactional(async (em) => {
        const { flag: current, revision } = await bounded(store.read(key), 'reading the flag');
        const before = current ? strip(current) : null;
        const after: StoredFlag = { key, ...spec, updatedAt: new Date().toISOString(), updatedBy: actor };
        // The KV write happens inside the transaction: a lost compare-and-set rolls back
        // nothing written yet, and the audit row commits only for a write that happened.
        const rev = await bounded(store.compareAndSet(key, after, revision), 'writing the flag').catch(async (err) => {
          if (!(err instanceof FlagsUnavailableError)) throw err;
          // No answer is no proof the write did not land: if our definition is there, audit it.
          const now = await bounded(store.read(key), 'reading the flag back');
          if (now.flag && now.flag.updatedAt === after.updatedAt && now.flag.updatedBy === actor && now.revision > revision) return now.revision;
          throw err;
        });
        em.create(FlagChange, { id: randomUUID(), flagKey: key, revision: rev, actor, at: new Date(after.updatedAt), before, after });
        return { flag: { ...after, revision: rev }, before };
      });
    } catch (err) {
      if (!(err instanceof FlagConflictError) || attempt >= MAX_ATTEMPTS) {
        if (err instanceof FlagConflictError) throw new HttpError(409, 'CONFLICT', `flag ${key} is being changed concurrently; try again`, undefined, { cause: err });
        throw err;
      }
      await new Promise((r) => setTimeout(r, Math.random() * 20 * attempt));
    }
  }
}

const strip = ({ revision: _r, ...f }: Flag): StoredFlag => f;

/** NATS did not answer in time: 503, as for the DLQ API, instead of a 500 after the client's 10 s timeout. */
export class FlagsUnavailableError extends HttpError {
  override name = 'FlagsUnavailableError';
  constructor(what: string, options?: { cause?: unknown }) {
    super(503, 'UNAVAILABLE', `NATS is unreachable (${what}); read the flag and retry shortly`, undefined, options);
  }
}

const NATS_TIMEOUT_MS = 1500;
async function bounded<T>(p: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      p.catch((err) => { throw err instanceof FlagConflictError ? err : new FlagsUnavailableError(what, { cause: err }); }),
      new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new FlagsUnavailableError(`${what}: no answer in ${NATS_TIMEOUT_MS} ms`)), NATS_TIMEOUT_MS); }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** The latest changes of a flag, newest first. */
export async function flagHistory(orm: MikroORM, key: string, limit = HISTORY_LIMIT): Promise<FlagChangeView[]> {
  const rows = await orm.em.fork().find(FlagChange, { flagKey: key }, { orderBy: { revision: 'desc' }, limit });
  return rows.map((r) => ({ at: r.at.toISOString(), actor: r.actor, revision: r.revision, before: r.before ?? null, after: r.after }));
}

export function flagRoutes(routes: Routes, { store, orm }: { store: FlagStore; orm: MikroORM }) {
  const keyOf = (raw: string) => validate({ key: raw }, FlagKeyParam).key;
  const tags = ['flags'];
  routes.add({
    method: 'GET', path: '/api/admin/flags', tags, summary: 'List feature flags', access: ADMIN,
    responses: { 200: { description: 'every flag', schema: FlagList } },
    handler: (c) => c.json({ items: store.list().map(view) }),
  });
  routes.add({
    method: 'GET', path: '/api/admin/flags/{key}', tags, summary: 'Read a flag with its change history', access: ADMIN,
    params: { key: {} },
    responses: { 200: { description: 'the flag and its latest changes', schema: FlagWithHistory } },
    errors: [404],
    handler: async (c) => {
      const key = keyOf(c.req.param('key')!);
      const flag = store.get(key);
      if (!flag) throw notFound(`feature flag ${key}`);
      return c.json({ ...view(flag), history: await flagHistory(orm, key) });
    },
  });
  routes.add({
    method: 'PUT', path: '/api/admin/flags/{key}', tags, summary: 'Define or change a flag', access: ADMIN,
    params: { key: {} }, body: FlagSpec,
    responses: { 200: { description: 'the flag as written', schema: FlagView } },
    errors: [409],
    handler: async (c, { body: spec, principal }) => {
      const key = keyOf(c.req.param('key')!);
      const { flag } = await changeFlag({ store, orm }, key, spec, principal!.sub);
      return c.json(view(flag));
    },
  });
}

const FlagKeyParam = z.object({ key: FlagKey });
