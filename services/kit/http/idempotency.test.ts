import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migrate, openOrm, type MikroORM } from '../db.ts';
import { createLogger } from '../log.ts';
import { createMetrics } from '../metrics.ts';
import { kitMigrations } from '../migrations.ts';
import { createTestDatabase } from '../../testing/index.ts';
import type { Context } from 'hono';
import { createApp, type App } from './app.ts';
import { HttpError } from './errors.ts';
import { idempotency, IdempotencyKeyTaken, principalKey } from './idempotency.ts';
import type { ApiEnv } from './route.ts';

let db: Awaited<ReturnType<typeof createTestDatabase>>;
let orm: MikroORM;
let app: App;
const runs = new Map<string, number>();
const gates = new Map<string, Promise<void>>();
const ran = (name: string) => runs.set(name, (runs.get(name) ?? 0) + 1);

beforeAll(async () => {
  db = await createTestDatabase();
  orm = await openOrm({ url: db.url, entities: [], migrations: kitMigrations });
  await migrate(orm, createLogger({ level: 'silent' }));
  await orm.em.fork().execute('create table public.things (name text primary key)');
  app = createApp({ log: createLogger({ level: 'silent' }), metrics: createMetrics(), readiness: async () => [] });
  // Stands in for authentication (route.ts puts requireAuth before the middleware): `x-as` names the principal.
  app.use('*', async (c, next) => {
    const sub = c.req.header('x-as');
    if (sub) (c as unknown as Context<ApiEnv>).set('principal', { sub, kind: 'user', roles: [], scopes: [] });
    await next();
  });
  // The middleware claims and stores; the handler knows nothing of keys.
  app.post('/claim', idempotency(orm, 'claim', { leaseMs: 600 }), async (c) => {
    const { name, status = 201 } = await c.req.json();
    ran(name);
    if (runs.get(name) === 1) await gates.get(name); // a second run (a taken-over claim) does not wait
    if (status >= 500) return c.json({ error: { code: 'INTERNAL', message: 'x' } }, 500);
    return c.json({ name, run: runs.get(name) }, status);
  });
  app.post('/default', idempotency(orm, 'default'), async (c) => { const { name } = await c.req.json(); ran(name); return c.json({ name }, 201); });
  // The handler writes the key's row in the statement that makes its effect.
  app.post('/atomic', idempotency(orm, 'atomic', { commit: 'handler', leaseMs: 600 }), async (c) => {
    const { name } = await c.req.json();
    if (!name) throw new HttpError(400, 'VALIDATION_FAILED', 'name is required');
    const claim = c.get('idempotency');
    const response = JSON.stringify({ name });
    // A thing is its principal's: two principals may each make one of the same name.
    const thing = `${c.req.header('x-as') ?? ''}/${name}`;
    const rows = await orm.em.fork().execute<{ name: string }[]>(
      `with t as (insert into public.things (name) select ?
                  where ?::text is null or not exists (select 1 from kit.idempotency_keys where scope = ? and principal = ? and key = ?)
                  on conflict do nothing returning name),
            k as (insert into kit.idempotency_keys (scope, principal, key, request_hash, state, response_status, response_body)
                  select ?, ?, ?, ?, 'done', 201, ? from t where ?::text is not null)
       select name from t`,
      [thing, claim?.key ?? null, claim?.scope ?? null, claim?.principal ?? null, claim?.key ?? null,
        claim?.scope ?? null, claim?.principal ?? null, claim?.key ?? null, claim?.requestHash ?? null, response, claim?.key ?? null],
    ).catch((err) => { throw /idempotency_keys_pkey/.test(String(err)) ? new IdempotencyKeyTaken({ cause: err }) : err; });
    if (!rows.length) throw new HttpError(409, 'DUPLICATE', `${name} exists`);
    if (claim) claim.committed = true;
    ran(name);
    return c.body(response, 201, { 'content-type': 'application/json' });
  });
});
afterAll(async () => { await orm?.close(); await db?.drop(); });

const post = (path: string, key: string, body: unknown, as?: string) =>
  app.request(path, { method: 'POST', body: JSON.stringify(body), headers: { 'content-type': 'application/json', 'idempotency-key': key, ...(as ? { 'x-as': as } : {}) } });
const uid = (p: string) => `${p}-${Math.random().toString(36).slice(2, 10)}`;
const insertRunning = async (scope: string, key: string, body: unknown, ageSeconds: number) => {
  const { createHash } = await import('node:crypto');
  await orm.em.fork().execute(`insert into kit.idempotency_keys (scope, principal, key, request_hash, state, created_at) values (?, '', ?, ?, 'running', now() - make_interval(secs => ?))`,
    [scope, key, createHash('sha256').update(JSON.stringify(body)).digest('hex'), ageSeconds]);
};

describe('idempotency, the middleware claiming and storing', () => {
  it('replays the first response for the same key and body, 422s another body, and 400s a bad key', async () => {
    const key = uid('k');
    const name = uid('n');
    const first = await post('/claim', key, { name });
    const again = await post('/claim', key, { name });
    expect([first.status, again.status, again.headers.get('idempotent-replayed')]).toEqual([201, 201, 'true']);
    expect(await again.json()).toEqual(await first.json());
    expect(runs.get(name)).toBe(1);
    const other = await post('/claim', key, { name: 'other' });
    expect([other.status, (await other.json()).error.code]).toEqual([422, 'IDEMPOTENCY_KEY_REUSED']);
    expect((await post('/claim', 'bad key', { name })).status).toBe(400);
  });

  it('answers 409 while the first runs, keeps the claim past its lease while it runs, and does not remember a 5xx', async () => {
    const key = uid('k');
    const name = uid('n');
    let open!: () => void;
    gates.set(name, new Promise((r) => { open = r; }));
    const first = post('/claim', key, { name });
    await sleep(1500); // over twice the 600 ms lease: only renewal keeps the claim
    const during = await post('/claim', key, { name });
    expect([during.status, (await during.json()).error.code]).toEqual([409, 'REQUEST_IN_PROGRESS']);
    open();
    expect((await first).status).toBe(201);
    expect(runs.get(name)).toBe(1);

    const failing = uid('n');
    expect((await post('/claim', key + 'x', { name: failing, status: 500 })).status).toBe(500);
    expect((await post('/claim', key + 'x', { name: failing, status: 500 })).status).toBe(500);
    expect(runs.get(failing)).toBe(2);
  });

  it('takes over a claim whose process died within seconds (its lease ran out), not after a minute', async () => {
    const key = uid('k');
    const name = uid('n');
    // A claim a killed process left 15 s ago, with the default lease.
    await insertRunning('default', key, { name }, 15);
    const res = await post('/default', key, { name });
    expect(res.status).toBe(201);
    expect(runs.get(name)).toBe(1);
    const fresh = uid('k');
    await insertRunning('default', fresh, { name }, 0);
    expect((await post('/default', fresh, { name })).status).toBe(409);
  });
});

describe('idempotency keys belong to the principal that sent them', () => {
  for (const path of ['/claim', '/atomic']) {
    it(`${path}: another principal sending the same key and body gets its own processing, not the first one's answer`, async () => {
      const key = uid('k');
      const name = uid('n');
      const a = await post(path, key, { name }, 'alice');
      const b = await post(path, key, { name }, 'bob');
      expect([a.status, b.status, b.headers.get('idempotent-replayed')]).toEqual([201, 201, null]);
      expect(runs.get(name)).toBe(2);
      // Each principal's retry replays its own answer; anonymous callers are a principal of their own.
      const againA = await post(path, key, { name }, 'alice');
      expect([againA.status, againA.headers.get('idempotent-replayed')]).toEqual([201, 'true']);
      expect(await againA.json()).toEqual(await a.json());
      expect((await post(path, key, { name }, 'bob')).headers.get('idempotent-replayed')).toBe('true');
      expect((await post(path, key, { name })).headers.get('idempotent-replayed')).toBe(null);
      expect(runs.get(name)).toBe(3);
      // Another body under the same key is refused per principal too.
      expect((await post(path, key, { name: uid('n') }, 'bob')).status).toBe(422);
      const rows = await orm.em.fork().execute<{ principal: string }[]>('select principal from kit.idempotency_keys where key = ? order by principal', [key]);
      expect(rows.map((r) => r.principal)).toEqual(['', 'user:alice', 'user:bob']);
    });
  }

  it('names a principal by its kind and id, so a user and a client with one id never share keys', () => {
    expect(principalKey({ kind: 'user', sub: 'x' })).not.toBe(principalKey({ kind: 'client', sub: 'x' }));
    expect(principalKey(undefined)).toBe('');
  });
});

describe('idempotency, the handler committing the key with its effect', () => {
  it('replays the committed response, stores a 4xx, and 422s another body', async () => {
    const key = uid('k');
    const name = uid('n');
    const first = await post('/atomic', key, { name });
    const again = await post('/atomic', key, { name });
    expect([first.status, again.status, again.headers.get('idempotent-replayed')]).toEqual([201, 201, 'true']);
    expect(await again.json()).toEqual({ name });
    expect(runs.get(name)).toBe(1);
    expect((await post('/atomic', key, { name: uid('n') })).status).toBe(422);
    const bad = uid('k');
    expect((await post('/atomic', bad, {})).status).toBe(400);
    const replayed = await post('/atomic', bad, {});
    expect([replayed.status, replayed.headers.get('idempotent-replayed')]).toEqual([400, 'true']);
  });

  it('lets one of two concurrent requests with one key and two bodies make its effect; the other gets 422', async () => {
    for (let i = 0; i < 5; i++) {
      const key = uid('k');
      const [a, b] = [uid('a'), uid('b')];
      const answers = await Promise.all([post('/atomic', key, { name: a }), post('/atomic', key, { name: b })]);
      expect(answers.map((r) => r.status).sort()).toEqual([201, 422]);
      const [{ n }] = await orm.em.fork().execute<{ n: string }[]>('select count(*) as n from public.things where name in (?, ?)', [`/${a}`, `/${b}`]);
      expect(Number(n)).toBe(1);
    }
  });

  it('answers 409 for a running row a dead process left, and clears it once its lease ran out', async () => {
    const key = uid('k');
    const name = uid('n');
    await insertRunning('atomic', key, { name }, 5);
    const res = await post('/atomic', key, { name });
    expect([res.status, res.headers.get('retry-after')]).toEqual([409, '1']);
    expect((await post('/atomic', key, { name })).status).toBe(201);
  });
});
