import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase } from '../testing/index.ts';
import pg from 'pg';
import { ensureDatabase, openOrm, poolUsage, rawQuery, type MikroORM } from './db.ts';

let db: Awaited<ReturnType<typeof createTestDatabase>>;
let orm: MikroORM;
beforeAll(async () => {
  db = await createTestDatabase();
  orm = await openOrm({ url: db.url, entities: [], migrations: [], poolMax: 2 });
  await orm.em.fork().execute('create table rq (k text primary key, body jsonb not null)');
});
afterAll(async () => {
  await orm?.close();
  await db?.drop();
});

describe('rawQuery', () => {
  it('sends a parameter as a bind value: quotes, backslashes and non-ASCII arrive as sent', async () => {
    const body = { note: `it's a "quote", a \\ backslash, \u00e9 and E'x'`, n: [1, 2] };
    const rows = await rawQuery<{ k: string; body: typeof body }>(orm, 'insert into rq (k, body) select $1, $2::jsonb returning k, body', ['a', JSON.stringify(body)]);
    expect(rows).toEqual([{ k: 'a', body }]);
  });

  it('fails with the driver error: its code and constraint, as callers match them (orders: idempotency_keys_pkey)', async () => {
    await rawQuery(orm, 'insert into rq (k, body) values ($1, $2::jsonb)', ['dup', '{}']);
    const err = await rawQuery(orm, 'insert into rq (k, body) values ($1, $2::jsonb)', ['dup', '{}']).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: '23505', constraint: 'rq_pkey', message: expect.stringContaining('rq_pkey') });
  });
});

describe('ensureDatabase', () => {
  // Found by the chaos suite: two processes started side by side on a fresh server both saw no
  // database, both ran CREATE DATABASE, and the loser got 23505 on pg_database's unique index
  // (42P04 only comes when the winner has committed before the check), and died at start-up.
  it('several processes creating one missing database at once all succeed', async () => {
    const name = `orderflow_race_${process.pid}_${Math.random().toString(36).slice(2, 8)}`;
    const url = new URL(db.url);
    url.pathname = `/${name}`;
    try {
      const results = await Promise.allSettled(Array.from({ length: 8 }, () => ensureDatabase(url.toString())));
      expect(results.filter((r) => r.status === 'rejected').map((r) => String((r as PromiseRejectedResult).reason))).toEqual([]);
    } finally {
      const admin = new pg.Client({ connectionString: db.url });
      await admin.connect();
      await admin.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
      await admin.end();
    }
  });
});

describe('a connection lost inside a transaction', () => {
  // Found by the chaos suite (a Postgres black hole, then resets): kysely's ControlledTransaction,
  // which MikroORM's transactional() uses, releases its connection only after a ROLLBACK that
  // succeeded; on a dead connection the ROLLBACK throws, and the pool kept the slot forever.
  // Twenty such transactions and the process never reached Postgres again.
  it('gives its pool slot back, so the pool still serves afterwards', async () => {
    const leaky = await openOrm({ url: db.url, entities: [], migrations: [], poolMax: 2 });
    try {
      for (let i = 0; i < 3; i++) {
        const failed = await leaky.em.fork().transactional(async (em) => {
          const [{ pid }] = await em.execute<{ pid: number }[]>('select pg_backend_pid() as pid');
          await em.execute('select pg_terminate_backend(?)', [pid]); // the server drops this very connection
        }).then(() => false, () => true);
        expect(failed).toBe(true);
      }
      const answer = await Promise.race([
        leaky.em.fork().execute('select 1 as one'),
        new Promise((r) => setTimeout(() => r('pool exhausted: no connection in 10 s'), 10_000)),
      ]);
      expect(answer).toEqual([{ one: 1 }]);
      expect((await poolUsage(leaky)).active).toBeLessThanOrEqual(1);
    } finally {
      // A leaked connection would hold pool.end() forever.
      await Promise.race([leaky.close(), new Promise((r) => setTimeout(r, 5000))]);
    }
  });
});
