// A process boots only what its targets declare (modules.ts): their schemas, the outbox
// relay and the DLQ mover where a target wants them.
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestCluster, type TestCluster, eventually } from '../testing/index.ts';
import { ADVISORY_STREAM, DLQ_MOVER } from './dlq.ts';
import { ConfigError } from './errors.ts';
import { startRuntime } from './runtime.ts';
import { registry } from '../main.ts';

const schemasOf = async (c: TestCluster) => (await c.deps.orm.em.fork().execute<{ s: string }[]>(
  `select schema_name as s from information_schema.schemata
    where schema_name not in ('public', 'information_schema') and schema_name not like 'pg\\_%' order by 1`)).map((r) => r.s);
const migrationsOf = async (c: TestCluster) => (await c.deps.orm.em.fork().execute<{ name: string }[]>('select name from kit.mikro_orm_migrations order by name')).map((r) => r.name);

/** Put a row in the outbox for a test stream; resolves to "is it still there?" and "how many reached the stream?". */
const outboxProbe = async (c: TestCluster) => {
  const stream = `RUNTIMETEST${Math.random().toString(36).slice(2, 8).toUpperCase()}`;
  await c.deps.nats.jsm.streams.add({ name: stream, subjects: [`${stream.toLowerCase()}.>`] });
  const [row] = await c.deps.orm.em.fork().execute<{ id: string }[]>(
    `insert into kit.outbox (id, subject, payload) values (gen_random_uuid(), ?, '{}') returning id`, [`${stream.toLowerCase()}.probe`]);
  return {
    pending: async () => (await c.deps.orm.em.fork().execute('select 1 from kit.outbox where id = ?', [row!.id])).length === 1,
    published: async () => (await c.deps.nats.jsm.streams.info(stream)).state.messages,
  };
};
const moverPulls = async (c: TestCluster) => (await c.deps.nats.jsm.consumers.info(ADVISORY_STREAM, DLQ_MOVER)).num_waiting;

describe('TARGET=notifications boots only what notifications needs', () => {
  let c: TestCluster;
  beforeAll(async () => { c = await startTestCluster({ TARGET: 'notifications' }, undefined, { identity: false }); });
  afterAll(async () => { await c?.close(); });

  it('migrates its schema and the kit tables, nothing else', async () => {
    expect(await schemasOf(c)).toEqual(['kit', 'notifications']);
    const migrations = await migrationsOf(c);
    expect(migrations.length).toBeGreaterThan(0);
    expect(migrations.filter((n) => !n.startsWith('notifications-') && !n.startsWith('0000-kit-'))).toEqual([]);
  });

  it('runs no outbox relay and no DLQ mover', async () => {
    const probe = await outboxProbe(c);
    // A relay polls the table every second; give one three chances.
    await sleep(3000);
    expect(await probe.pending()).toBe(true);
    expect(await probe.published()).toBe(0);
    expect(await moverPulls(c)).toBe(0);
  });

  it('starts the simulators it needs (SMS; SMTP came from the test) and no other', async () => {
    expect((await c.get('/_dev/sms/v1/messages')).status).toBe(200);
    expect((await c.get('/_dev/t24/_sim/stats')).status).toBe(404);
    expect((await c.get('/_dev/gateway/_sim/references/x')).status).toBe(404);
  });
});

describe('TARGET=funding-scoring', () => {
  let c: TestCluster;
  beforeAll(async () => { c = await startTestCluster({ TARGET: 'funding-scoring', FUNDING_RISK_THREADS: '1', FUNDING_RISK_NICE: '0' }, undefined, { identity: false }); });
  afterAll(async () => { await c?.close(); });

  it('migrates the funding schema it works on (owned by the funding target) and the kit tables, nothing else', async () => {
    expect(await schemasOf(c)).toEqual(['funding', 'kit']);
    expect((await migrationsOf(c)).filter((n) => !n.startsWith('funding-') && !n.startsWith('0000-kit-'))).toEqual([]);
    await c.deps.orm.em.fork().execute('select 1 from funding.applications limit 1');
  });

  it('relays its outbox rows itself, runs no DLQ mover and mounts no funding routes', async () => {
    const probe = await outboxProbe(c);
    await eventually(async () => (await probe.published()) === 1, { what: 'row published by this process' });
    // The relay deletes the row in the transaction that published it: the commit may come a moment after the stream has it.
    await eventually(async () => !(await probe.pending()), { what: 'published row deleted' });
    expect(await probe.published()).toBe(1);
    expect(await moverPulls(c)).toBe(0);
    expect((await c.get('/api/funding/applications/00000000-0000-4000-8000-000000000000')).status).toBe(404);
    expect((await c.get('/readyz')).status).toBe(200);
  });
});

describe('TARGET=admin', () => {
  let c: TestCluster;
  beforeAll(async () => { c = await startTestCluster({ TARGET: 'admin' }, undefined, { identity: false }); });
  afterAll(async () => { await c?.close(); });

  it('migrates only the kit tables and its own (the flag audit), runs the DLQ mover and the backstop relay', async () => {
    expect(await schemasOf(c)).toEqual(['admin', 'kit']);
    await eventually(async () => (await moverPulls(c)) > 0, { what: 'the DLQ mover pulling' });
    const probe = await outboxProbe(c);
    await eventually(async () => (await probe.published()) === 1, { what: 'row published by the backstop relay' });
  });
});

describe('retention of the kit tables (retention.ts), in every process', () => {
  let c: TestCluster;
  beforeAll(async () => { c = await startTestCluster({ TARGET: 'notifications', RETENTION_INTERVAL_S: '1' }, undefined, { identity: false }); });
  afterAll(async () => { await c?.close(); });

  it('prunes expired inbox rows and answered keys, keeps the rest, and counts them in orderflow_retention_pruned_total', async () => {
    const em = () => c.deps.orm.em.fork();
    await em().execute(`insert into kit.inbox (consumer, msg_id, processed_at) values ('rt', 'old', now() - interval '46 days'), ('rt', 'new', now() - interval '44 days')`);
    await em().execute(`insert into kit.idempotency_keys (scope, principal, key, request_hash, state, response_status, response_body, created_at)
      values ('rt', '', 'old', 'h', 'done', 201, '{}', now() - interval '25 hours'), ('rt', '', 'new', 'h', 'done', 201, '{}', now() - interval '23 hours')`);
    await eventually(async () => (await em().execute(`select 1 from kit.inbox where consumer = 'rt' and msg_id = 'old'
      union all select 1 from kit.idempotency_keys where scope = 'rt' and key = 'old'`)).length === 0, { what: 'expired rows pruned' });
    expect((await em().execute(`select msg_id from kit.inbox where consumer = 'rt'`)).map((r) => r.msg_id)).toEqual(['new']);
    expect((await em().execute(`select key from kit.idempotency_keys where scope = 'rt'`)).map((r) => r.key)).toEqual(['new']);
    const text = await c.deps.metrics.registry.metrics();
    expect(text).toMatch(/orderflow_retention_pruned_total\{table="inbox"\} 1\n/);
    expect(text).toMatch(/orderflow_retention_pruned_total\{table="idempotency_keys"\} 1\n/);
  });

  it('refuses to start with an inbox retention shorter than a stream keeps a message', async () => {
    await expect(startRuntime({ env: { TARGET: 'notifications', INBOX_RETENTION_HOURS: '24', PORT: '0', LOG_LEVEL: 'silent' }, registry }))
      .rejects.toThrow(ConfigError);
  });
});
