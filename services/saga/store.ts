// Saga persistence: insert, optimistic update (version), and the sweeper's claim.
import type { EntityManager } from '../kit/db.ts';
import { enqueue } from '../kit/outbox.ts';
import type { Decision, Saga } from './saga.ts';

/** Another replica advanced this saga first; the message is retried and sees the new state. */
export class SagaConflictError extends Error {
  override name = 'SagaConflictError';
}

const deadlineOf = (s: Saga) => (s.deadline === null ? null : new Date(s.deadline));

export async function loadSaga(em: EntityManager, id: string, lock = false): Promise<Saga | null> {
  const [r] = await em.execute<{ doc: Saga }[]>(`select doc from saga.sagas where id = ?${lock ? ' for update' : ''}`, [id]);
  return r ? r.doc : null;
}

/** Insert a new saga with its first messages; false when it exists (a redelivered orders.created). */
export async function insertSaga(em: EntityManager, d: Decision, headers?: Record<string, string>): Promise<boolean> {
  const s = d.saga;
  const r = await em.execute(
    'insert into saga.sagas (id, step, status, version, deadline, doc) values (?, ?, ?, ?, ?, ?::jsonb) on conflict do nothing returning 1',
    [s.id, s.step, s.status, s.version, deadlineOf(s), JSON.stringify(s)]);
  if (!r.length) return false;
  await enqueue(em, d.out.map((m) => ({ ...m, headers })));
  return true;
}

/** Persist a decision taken on `prevVersion`, with its messages. Throws SagaConflictError when the row moved on. */
export async function saveDecision(em: EntityManager, prevVersion: number, d: Decision, headers?: Record<string, string>): Promise<void> {
  const s = d.saga;
  if (s.version !== prevVersion) {
    const r = await em.execute(
      'update saga.sagas set step = ?, status = ?, version = ?, deadline = ?, doc = ?::jsonb, updated_at = now() where id = ? and version = ? returning 1',
      [s.step, s.status, s.version, deadlineOf(s), JSON.stringify(s), s.id, prevVersion]);
    if (!r.length) throw new SagaConflictError(`saga ${s.id} moved past version ${prevVersion}`);
  }
  await enqueue(em, d.out.map((m) => ({ ...m, headers })));
}
