import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestCluster, type TestCluster, eventually } from '../testing/index.ts';
import { enqueue, startOutboxRelay } from './outbox.ts';

let c: TestCluster;
beforeAll(async () => {
  // No services: the runtime's own relay runs, and these tests start more.
  c = await startTestCluster({ TARGET: 'admin' });
  await c.deps.nats.jsm.streams.add({ name: 'OUTBOXTEST', subjects: ['outboxtest.>'], duplicate_window: 120e9 });
});
afterAll(async () => { await c?.close(); });

const count = async (subject: string) => (await c.deps.nats.jsm.streams.info('OUTBOXTEST', { subjects_filter: subject })).state.subjects?.[subject] ?? 0;
const pending = async () => Number((await c.deps.orm.em.fork().execute<{ n: string }[]>('select count(*) as n from kit.outbox'))[0]!.n);

describe('outbox relay', () => {
  it('publishes every row once with several relays racing on the table', async () => {
    const relays = [1, 2, 3].map(() => startOutboxRelay({ orm: c.deps.orm, js: c.deps.nats.js, log: c.deps.log, batchSize: 50, pollMs: 50 }));
    await c.deps.orm.em.fork().transactional(async (em) => {
      await enqueue(em, Array.from({ length: 1000 }, (_, i) => ({ subject: 'outboxtest.many', data: { i } })));
    });
    await eventually(async () => (await pending()) === 0, { what: 'outbox drained' });
    await Promise.all(relays.map((r) => r.stop()));
    expect(await count('outboxtest.many')).toBe(1000);
  });

  it('does not duplicate an event when the relay crashed between publish and delete', async () => {
    // The "crashed" relay published these rows but never deleted them.
    const ids = await c.deps.orm.em.fork().transactional(async (em) =>
      await enqueue(em, Array.from({ length: 20 }, (_, i) => ({ subject: 'outboxtest.crash', data: { i } }))));
    const rows = await c.deps.orm.em.fork().execute<{ id: string; payload: string }[]>('select id, payload from kit.outbox where id in (?)', [ids]);
    for (const r of rows) await c.deps.nats.js.publish('outboxtest.crash', r.payload, { msgID: r.id });
    expect(await count('outboxtest.crash')).toBe(20);
    await eventually(async () => (await c.deps.orm.em.fork().execute('select 1 from kit.outbox where id in (?)', [ids])).length === 0, { what: 'republished rows deleted' });
    expect(await count('outboxtest.crash')).toBe(20);
  });

  it('keeps rows of a rolled-back transaction out', async () => {
    await c.deps.orm.em.fork().transactional(async (em) => {
      await enqueue(em, [{ subject: 'outboxtest.rollback', data: {} }]);
      throw new Error('abort');
    }).catch(() => {});
    await new Promise((r) => setTimeout(r, 300));
    expect(await count('outboxtest.rollback')).toBe(0);
  });

  it("runs a subject's hook with its rows before the drain commits: a hook that throws puts them back, and a relay without the hook leaves them", async () => {
    // A subject the module map hooks (funding's status events), so the runtime relay of this
    // TARGET=admin process (no funding target) must leave its rows to a relay that has the hook.
    const hooked = 'funding.status.updated';
    const ids = await c.deps.orm.em.fork().transactional(async (em) =>
      await enqueue(em, [{ subject: hooked, data: { n: 1 } }, { subject: hooked, data: { n: 2 } }]));
    const left = async () => (await c.deps.orm.em.fork().execute('select 1 from kit.outbox where id in (?)', [ids])).length;
    await new Promise((r) => setTimeout(r, 1500)); // past the runtime relay's wake and its next poll
    expect(await left()).toBe(2);

    const seen: string[][] = [];
    let fail = true;
    const relay = startOutboxRelay({
      orm: c.deps.orm, js: c.deps.nats.js, log: c.deps.log, pollMs: 50,
      hooks: new Map([[hooked, async (payloads: string[]) => { seen.push(payloads); if (fail) throw new Error('cache down'); }]]),
    });
    try {
      await eventually(() => seen.length >= 1, { what: 'hook ran' });
      expect(await left()).toBe(2);
      fail = false;
      await eventually(async () => (await left()) === 0, { what: 'rows deleted once the hook succeeded' });
      expect(seen.at(-1)!.map((p) => JSON.parse(p).n)).toEqual([1, 2]);
    } finally {
      await relay.stop();
    }
  });

  it('publishes rows handed over as committed at once, without a drain, and leaves them to the drain when that fails', async () => {
    // The hooked subject again: the runtime relay leaves these rows, and this relay never polls.
    const hooked = 'funding.status.updated';
    const seen: string[][] = [];
    let fail = false;
    const relay = startOutboxRelay({
      orm: c.deps.orm, js: c.deps.nats.js, log: c.deps.log, pollMs: 3_600_000,
      hooks: new Map([[hooked, async (payloads: string[]) => { seen.push(payloads); if (fail) throw new Error('cache down'); }]]),
    });
    const insert = async (n: number) => await c.deps.orm.em.fork().execute<{ id: string; subject: string; payload: string; headers: Record<string, string> }[]>(
      `insert into kit.outbox (id, subject, payload, headers) values (gen_random_uuid(), ?, ?, '{}'::jsonb) returning id, subject, payload, headers`, [hooked, JSON.stringify({ n })]);
    const left = async (ids: string[]) => (await c.deps.orm.em.fork().execute('select 1 from kit.outbox where id in (?)', [ids])).length;
    try {
      const a = await insert(1);
      relay.wake(a);
      await eventually(async () => (await left(a.map((r) => r.id))) === 0, { what: 'committed rows published and deleted' });
      // A drain racing the hand-over may publish them too (the stream drops the copy): the hook saw only them.
      expect(seen.length).toBeGreaterThanOrEqual(1);
      for (const p of seen) expect(p.map((x) => JSON.parse(x).n)).toEqual([1]);
      seen.length = 0;

      fail = true;
      const b = await insert(2);
      relay.wake(b);
      await eventually(() => seen.length >= 1, { what: 'hook ran and failed' });
      expect(await left(b.map((r) => r.id))).toBe(1);
      fail = false;
      await eventually(async () => (await left(b.map((r) => r.id))) === 0, { what: 'the drain took them over' });
    } finally {
      await relay.stop();
    }
  });

  it('leaves a published hand-over waiting for its shared delete out of its drains: no second publish, no second hook', async () => {
    const hooked = 'funding.status.updated';
    const seen: string[][] = [];
    const relay = startOutboxRelay({
      orm: c.deps.orm, js: c.deps.nats.js, log: c.deps.log, pollMs: 3_600_000, forgetMs: 1500,
      hooks: new Map([[hooked, async (payloads: string[]) => { seen.push(payloads); }]]),
    });
    // Past the relay's first drain at start, which would otherwise race the hand-over.
    await new Promise((r) => setTimeout(r, 500));
    try {
      const rows = await c.deps.orm.em.fork().execute<{ id: string; subject: string; payload: string; headers: Record<string, string> }[]>(
        `insert into kit.outbox (id, subject, payload, headers) values (gen_random_uuid(), ?, ?, '{}'::jsonb) returning id, subject, payload, headers`, [hooked, JSON.stringify({ n: 3 })]);
      relay.wake(rows);
      const mine = () => seen.flat().filter((p) => JSON.parse(p).n === 3).length;
      await eventually(() => mine() === 1, { what: 'hand-over published' });
      // Its delete waits for company; a drain meanwhile finds nothing of it to publish.
      await relay.drainOnce();
      expect(mine()).toBe(1);
      await eventually(async () => (await c.deps.orm.em.fork().execute('select 1 from kit.outbox where id = ?', [rows[0]!.id])).length === 0, { what: 'deleted' });
    } finally {
      await relay.stop();
    }
  });
});
