// bench:peers: our worker harness against BullMQ (Redis) and pg-boss (Postgres) on the same
// job: take a job, write one row to Postgres, acknowledge. Each twice: plainly, and with an
// exactly-once effect (the row and the job's settlement cannot part):
//   - ours: the kit's inbox (the row and the inbox row commit in one transaction; a
//     redelivery finds the inbox row and writes nothing);
//   - pg-boss: `transactional: true` (the row commits with the job's completion);
//   - BullMQ: no equivalent (completion lives in Redis, the row in Postgres), so the nearest
//     is the same inbox table done by hand in the handler, keyed by the job id.
// Jobs are queued first; then the consumer runs until every row is there. Reported: jobs/s
// and CPU per job of the consumer process plus its servers (Postgres backends of the bench
// database, and nats-server or redis-server), from /proc.
import { Kvm } from '@nats-io/kv';
import { AckPolicy, DeliverPolicy, RetentionPolicy } from '@nats-io/jetstream';
import { Queue, Worker as BullWorker } from 'bullmq';
import { Redis } from 'ioredis';
import pg from 'pg';
import { PgBoss } from 'pg-boss';
import { availableParallelism, cpus, totalmem } from 'node:os';
import { z } from 'zod';
import { connectNats } from '../services/kit/nats.ts';
import { migrate, openOrm } from '../services/kit/db.ts';
import { ERRORS_BUCKET } from '../services/kit/dlq.ts';
import { kitEntities, kitMigrations } from '../services/kit/migrations.ts';
import { createLogger, startBatchWorker, startWorker } from '../services/kit/index.ts';
import { createTestDatabase, eventually, startTestNats } from '../services/testing/index.ts';
import { cpuSeconds, snapshot } from './proc-cpu.ts';

const JOBS = Number(process.env.BENCH_PEERS_JOBS ?? 20_000);
const CONCURRENCY = Number(process.env.BENCH_PEERS_CONCURRENCY ?? 16);
const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379/7';
const log = createLogger({ level: 'warn' });

const nats = await startTestNats();
const db = await createTestDatabase('orderflow_peers');
const pool = new pg.Pool({ connectionString: db.url, max: CONCURRENCY + 4 });
await pool.query(`create schema bench;
  create table bench.done (id text primary key, n int not null, at timestamptz not null default now());
  create table bench.inbox (id text primary key)`);
const redis = new URL(REDIS_URL);
// BullMQ under native ESM takes a client it did not build (its workers need maxRetriesPerRequest null).
const redisClient = () => new Redis({ host: redis.hostname, port: Number(redis.port || 6379), db: Number(redis.pathname.slice(1) || 0), maxRetriesPerRequest: null });

type Row = { system: string; mode: string; jobsPerS: number; cpuUsPerJob: number; consumerUs: number; postgresUs: number; brokerUs: number };
const rows: Row[] = [];
const payload = (i: number) => ({ id: `j-${i}`, n: i });
const Job = z.object({ id: z.string(), n: z.number() });

async function measure(system: string, mode: string, broker: (cmd: string, pid: number) => boolean, consume: () => Promise<() => Promise<void>>) {
  await pool.query('truncate bench.done, bench.inbox');
  const before = snapshot();
  const t0 = performance.now();
  const stop = await consume();
  await eventually(async () => Number((await pool.query('select count(*) from bench.done')).rows[0].count) >= JOBS, { timeoutMs: 600_000, intervalMs: 50, what: `${system} ${mode}` });
  const seconds = (performance.now() - t0) / 1000;
  const after = snapshot();
  await stop();
  const us = (match: (p: { pid: number; cmd: string }) => boolean) => (cpuSeconds(before, after, match) / JOBS) * 1e6;
  const consumerUs = us(({ pid }) => pid === process.pid);
  const postgresUs = us(({ cmd }) => cmd.includes(db.name));
  const brokerUs = us(({ pid, cmd }) => broker(cmd, pid));
  const row = { system, mode, jobsPerS: JOBS / seconds, cpuUsPerJob: consumerUs + postgresUs + brokerUs, consumerUs, postgresUs, brokerUs };
  rows.push(row);
  console.error(`${system} ${mode}: ${Math.round(row.jobsPerS)} jobs/s, ${Math.round(row.cpuUsPerJob)} µs CPU/job (consumer ${Math.round(consumerUs)}, Postgres ${Math.round(postgresUs)}, broker ${Math.round(brokerUs)})`);
}

const insert = 'insert into bench.done (id, n) values ($1, $2)';

// Ours: a work-queue stream, one durable, the kit's worker.
{
  const n = await connectNats(nats.url, log, 'bench-peers');
  const orm = await openOrm({ url: db.url, entities: kitEntities as never, migrations: kitMigrations, poolMax: CONCURRENCY + 4 });
  await migrate(orm, log);
  const errors = await new Kvm(n.js).create(ERRORS_BUCKET);
  const isNats = (cmd: string) => cmd.startsWith('nats-server') && cmd.includes(` -p ${nats.port} `);
  for (const mode of ['plain', 'inbox', 'batch'] as const) {
    const stream = `PEERS_${mode.toUpperCase()}`;
    const subject = `peers.${mode}`;
    await n.jsm.streams.add({ name: stream, subjects: [subject], retention: RetentionPolicy.Workqueue });
    await n.jsm.consumers.add(stream, { durable_name: 'w', ack_policy: AckPolicy.Explicit, deliver_policy: DeliverPolicy.All, max_deliver: 5, ack_wait: 30e9 });
    // Ids of this mode's own: the inbox remembers (consumer, message id), and every mode's durable is `w`,
    // so the batch mode would otherwise find the inbox mode's ids and take every job for a duplicate.
    for (let i = 0; i < JOBS; i += 500) {
      await Promise.all(Array.from({ length: Math.min(500, JOBS - i) }, (_, k) => n.js.publish(subject, JSON.stringify(payload(i + k)), { msgID: `${mode}-${i + k}` })));
    }
    const label = { plain: 'plain', inbox: 'exactly-once (inbox)', batch: `exactly-once (inbox), batches of ${CONCURRENCY}` }[mode];
    await measure('orderflow (JetStream)', label, isNats, async () => {
      const common = { stream, consumer: 'w', js: n.js, orm, errors, log, schema: Job };
      if (mode === 'batch') {
        // One transaction and one multi-row inbox insert per batch: the counterpart of pg-boss's batches.
        const w = await startBatchWorker({
          ...common, batch: CONCURRENCY, key: (j) => j.id,
          // The rows as one JSON parameter: MikroORM spreads an array parameter into a list of
          // placeholders, which unnest(?::text[]) cannot take (every batch failed and never finished).
          handle: async (items, em) => { await em.execute(`insert into bench.done (id, n) select j->>'id', (j->>'n')::int from jsonb_array_elements(?::jsonb) j`, [JSON.stringify(items.map((x) => x.data))]); },
        });
        return async () => { await w.stop(); };
      }
      const w = await startWorker({
        ...common, concurrency: CONCURRENCY, inbox: mode === 'inbox',
        // The same one-row write either way; with the inbox it commits with this message's inbox row.
        handle: async (j, ctx) => { await ctx.tx((em) => em.execute('insert into bench.done (id, n) values (?, ?)', [j.id, j.n])); },
      });
      return async () => { await w.stop(5000); };
    });
  }
  await orm.close();
  await n.nc.drain();
}

// BullMQ on the machine's Redis (a database of its own, emptied first).
{
  const isRedis = (cmd: string) => cmd.startsWith('redis-server');
  for (const exactlyOnce of [false, true]) {
    const name = `peers-${exactlyOnce ? 'eo' : 'plain'}`;
    const qc = redisClient();
    const q = new Queue(name, { connection: qc });
    await q.obliterate({ force: true });
    for (let i = 0; i < JOBS; i += 1000) {
      await q.addBulk(Array.from({ length: Math.min(1000, JOBS - i) }, (_, k) => ({ name: 'job', data: payload(i + k), opts: { jobId: `j-${i + k}`, removeOnComplete: true } })));
    }
    await measure('BullMQ (Redis)', exactlyOnce ? 'exactly-once (inbox by hand)' : 'plain', isRedis, async () => {
      const w = new BullWorker(name, async (job) => {
        const j = job.data as { id: string; n: number };
        if (!exactlyOnce) { await pool.query(insert, [j.id, j.n]); return; }
        const c = await pool.connect();
        try {
          await c.query('begin');
          const fresh = await c.query('insert into bench.inbox (id) values ($1) on conflict do nothing', [job.id]);
          if (fresh.rowCount) await c.query(insert, [j.id, j.n]);
          await c.query('commit');
        } catch (err) {
          await c.query('rollback').catch(() => {});
          throw err;
        } finally {
          c.release();
        }
      }, { connection: redisClient(), concurrency: CONCURRENCY });
      return async () => { await w.close(); };
    });
    await q.obliterate({ force: true });
    await q.close();
    qc.disconnect();
  }
}

// pg-boss on the same Postgres database.
{
  const boss = new PgBoss({ connectionString: db.url, max: CONCURRENCY + 4 });
  boss.on('error', (err) => log.warn({ err }, 'pg-boss'));
  await boss.start();
  for (const transactional of [false, true]) {
    const name = `peers-${transactional ? 'tx' : 'plain'}`;
    await boss.createQueue(name);
    for (let i = 0; i < JOBS; i += 1000) {
      await boss.insert(name, Array.from({ length: Math.min(1000, JOBS - i) }, (_, k) => ({ data: payload(i + k) })));
    }
    await measure('pg-boss (Postgres)', transactional ? 'exactly-once (transactional)' : 'plain', () => false, async () => {
      // pg-boss's own best shape: one fetch takes up to CONCURRENCY jobs. (With batchSize 1 and
      // CONCURRENCY workers, each worker waits its polling interval between jobs: 31 jobs/s.)
      const opts = { localConcurrency: 1, batchSize: CONCURRENCY, pollingIntervalSeconds: 0.5 };
      const ids = transactional
        ? await boss.work(name, { ...opts, transactional: true }, async (jobs, tx) => {
          // One transaction: the rows commit with the batch's completion.
          for (const job of jobs) { const j = job.data as { id: string; n: number }; await tx.executeSql(insert, [j.id, j.n]); }
        })
        : await boss.work(name, opts, async (jobs) => {
          await Promise.all(jobs.map(async (job) => { const j = job.data as { id: string; n: number }; await pool.query(insert, [j.id, j.n]); }));
        });
      return async () => { await boss.offWork(name, { wait: true }).catch(() => {}); void ids; };
    });
  }
  await boss.stop({ graceful: true });
}

await pool.end();
await db.drop().catch(() => {});
await nats.stop();

const cpu = cpus()[0]?.model ?? 'unknown CPU';
console.log(`\n### bench:peers (${new Date().toISOString().slice(0, 10)}; ${availableParallelism()} cores, ${cpu}, ${Math.round(totalmem() / 2 ** 30)} GiB; ${JOBS} jobs, concurrency ${CONCURRENCY})\n`);
console.log('| system | mode | jobs/s | CPU µs/job (all) | consumer | Postgres | broker |');
console.log('|---|---|---:|---:|---:|---:|---:|');
for (const r of rows) {
  console.log(`| ${r.system} | ${r.mode} | ${Math.round(r.jobsPerS)} | ${Math.round(r.cpuUsPerJob)} | ${Math.round(r.consumerUs)} | ${Math.round(r.postgresUs)} | ${Math.round(r.brokerUs)} |`);
}
process.exit(0);
