// Saga persistence: insert, optimistic update (version), and the sweeper's claim.
import type { EntityManager } from '../kit/index.ts';
import { enqueue } from '../kit/index.ts';
import type { Decision, Saga } from './saga.ts';

/** Another replica advanced this saga first; the message is retried and sees the new state. */
export class SagaConflictError extends Error {
  override name = 'SagaConflictError';
}

const deadlineOf = (s: Saga) => (s.deadline === null ? null : new Date(s.deadline).toISOString());

/** Load and lock several sagas at once, in id order. */
export async function lockSagas(em: EntityManager, ids: string[]): Promise<Map<string, Saga>> {
  if (!ids.length) return new Map();
  const rows = await em.execute<{ doc: Saga }[]>('select doc from saga.sagas where id in (?) order by id for update', [ids]);
  return new Map(rows.map((r) => [r.doc.id, r.doc]));
}

/** Insert new sagas; returns the ids that were new (a redelivered orders.created is not). */
export async function insertSagas(em: EntityManager, sagas: Saga[]): Promise<Set<string>> {
  if (!sagas.length) return new Set();
  const rows = await em.execute<{ id: string }[]>(
    `insert into saga.sagas (id, step, status, version, deadline, doc) values ${sagas.map(() => '(?, ?, ?, ?, ?::timestamptz, ?::jsonb)').join(', ')}
     on conflict do nothing returning id`,
    sagas.flatMap((s) => [s.id, s.step, s.status, s.version, deadlineOf(s), JSON.stringify(s)]));
  return new Set(rows.map((r) => r.id));
}

/** Write sagas decided on `prev` versions, in one statement. Throws SagaConflictError when any row moved on. */
export async function updateSagas(em: EntityManager, changes: { saga: Saga; prevVersion: number }[]): Promise<void> {
  const moved = changes.filter((c) => c.saga.version !== c.prevVersion);
  if (!moved.length) return;
  const rows = await em.execute<{ id: string }[]>(
    `update saga.sagas s set step = v.step, status = v.status, version = v.version, deadline = v.deadline, doc = v.doc, updated_at = now()
       from (values ${moved.map(() => '(?::uuid, ?::text, ?::text, ?::int, ?::timestamptz, ?::jsonb, ?::int)').join(', ')})
         as v(id, step, status, version, deadline, doc, prev)
      where s.id = v.id and s.version = v.prev
      returning s.id`,
    moved.flatMap((c) => [c.saga.id, c.saga.step, c.saga.status, c.saga.version, deadlineOf(c.saga), JSON.stringify(c.saga), c.prevVersion]));
  if (rows.length !== moved.length) throw new SagaConflictError(`${moved.length - rows.length} saga(s) moved on meanwhile`);
}

/** Persist one decision taken on `prevVersion`, with its messages. */
export async function saveDecision(em: EntityManager, prevVersion: number, d: Decision, headers?: Record<string, string>): Promise<void> {
  await updateSagas(em, [{ saga: d.saga, prevVersion }]);
  await enqueue(em, d.out.map((m) => ({ ...m, headers })));
}
