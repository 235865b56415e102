// The performance budgets' measurement: the bench code (orders-load.ts, saga-rig.ts) run
// short, on private servers, returning the figures verdict.ts judges.
//
// 1. Intake against its reference, both up at once, in alternating rounds (reference,
//    intake, intake, reference, ...): a neighbour's burst or a slow minute of the host
//    then weighs on both sides alike.
// 2. The saga at a rate far below its ceiling (bench:saga's first phase), the cluster in
//    its deployed shape: two processes, the HTTP edge and the saga's actors; before it,
//    sagas one at a time, for the latency floor of the machine as it is in this run.
import type { ChildProcess } from 'node:child_process';
import { connect } from '@nats-io/transport-node';
import { createTestDatabase, eventually, startTestNats } from '../../services/testing/index.ts';
import { startGatewaySimulator, type GatewayKnobPatch } from '../../services/simulators/gateway.ts';
import { startSmsSimulator } from '../../services/simulators/sms.ts';
import { startSmtpSink } from '../../services/simulators/smtp-sink.ts';
import { loadOrders, startBareInsert, type LoadRow } from '../orders-load.ts';
import { pct, sagaDriver, startBenchCluster, type Env } from '../saga-rig.ts';
import { sagaRateFor, type Figures } from './verdict.ts';

export type BudgetOptions = {
  /** Alternating rounds of each side, and their length in seconds. */
  intakeRounds: number; intakeSeconds: number;
  /** Unmeasured load on each side first (JIT, pools). */
  warmSeconds: number;
  /** Orders per second offered to the saga; by default sagaRateFor() the reference measured in the intake rounds. */
  sagaRate?: number; sagaSeconds: number;
  /** How long accepted sagas may take to finish after the last send before they count as unfinished. */
  sagaFinishWithinMs: number;
  /** Sagas sent one at a time before the measured run, for the machine's latency floor. */
  sagaAlone: number;
  /** Extra environment of the orders process in the intake rounds, and of both saga processes. */
  intakeEnv?: Env; sagaEnv?: Env;
  /** The payment gateway simulator's knobs. */
  gateway?: GatewayKnobPatch;
  log?: (line: string) => void;
};

export const DEFAULTS: BudgetOptions = {
  intakeRounds: 4, intakeSeconds: 4, warmSeconds: 2,
  sagaSeconds: 15, sagaFinishWithinMs: 60_000, sagaAlone: 12,
  // A gateway that answers in 20-40 ms, as a real one does at best; bench:saga's answers at once.
  gateway: { latencyMs: { min: 20, max: 40 } },
};

/** `const figures = await measureBudgets({ ...DEFAULTS, intakeEnv: { ORDERS_WRITE_BATCH: '1' } })` */
export async function measureBudgets(o: BudgetOptions): Promise<Figures> {
  const children: ChildProcess[] = [];
  try {
    const intake = await measureIntake(o, children);
    const saga = await measureSaga({ ...o, sagaRate: o.sagaRate ?? sagaRateFor(intake.bare) }, children);
    return { intake, saga };
  } finally {
    for (const ch of children) if (ch.exitCode === null && ch.signalCode === null) ch.kill('SIGKILL');
  }
}

async function measureIntake(o: BudgetOptions, children: ChildProcess[]): Promise<Figures['intake']> {
  const log = o.log ?? (() => {});
  const nats = await startTestNats();
  const db = await createTestDatabase('orderflow_budget');
  let bare: Awaited<ReturnType<typeof startBareInsert>> | undefined;
  try {
    bare = await startBareInsert(db.url);
    const orders = await startBenchCluster({ NATS_URL: nats.url, DATABASE_URL: db.url, TARGET: 'orders', LOG_LEVEL: 'error', ...o.intakeEnv }, children);
    // Each round starts with the relay done: the rows intake left for JetStream would otherwise
    // be published on the CPU of the reference's round.
    const relayDone = () => eventually(async () => /orderflow_outbox_pending 0\b/.test(await (await fetch(`${orders.url}/metrics`)).text()),
      { timeoutMs: 60_000, intervalMs: 200, what: 'outbox drained' });
    const sides = [
      { name: 'reference', run: (duration: number) => loadOrders(bare!.url, { duration }), rows: [] as LoadRow[] },
      { name: 'intake', run: (duration: number) => loadOrders(orders.url, { duration, token: orders.token }), rows: [] as LoadRow[] },
    ];
    for (const s of sides) { await s.run(o.warmSeconds); await relayDone(); }
    for (let r = 0; r < o.intakeRounds; r++) {
      for (const s of r % 2 ? [...sides].reverse() : sides) {
        const row = await s.run(o.intakeSeconds);
        s.rows.push(row);
        log(`budget: ${s.name} round ${r + 1}: ${row.rps.toFixed(0)}/s (p50 ${row.p50} ms, p99 ${row.p99} ms, ${row.non2xx} non-2xx, ${row.errors} errors)`);
        await relayDone();
      }
    }
    await orders.stop();
    return { bare: sides[0]!.rows, orders: sides[1]!.rows };
  } finally {
    // On a throw the clusters are still up: measureBudgets kills them; the database goes WITH (FORCE).
    await bare?.stop();
    await nats.stop();
    await db.drop();
  }
}

async function measureSaga(o: BudgetOptions & { sagaRate: number }, children: ChildProcess[]): Promise<Figures['saga']> {
  const log = o.log ?? (() => {});
  const nats = await startTestNats();
  const db = await createTestDatabase('orderflow_budget');
  const sink = await startSmtpSink({ port: 0 });
  const gw = await startGatewaySimulator({ port: 0, seed: 11, ...o.gateway });
  const sms = await startSmsSimulator({ port: 0, seed: 11 });
  const nc = await connect({ servers: nats.url });
  try {
    const env = { NATS_URL: nats.url, DATABASE_URL: db.url, SMTP_URL: sink.url, PAYMENT_GATEWAY_URL: gw.url, SMS_URL: sms.url, DB_POOL_MAX: '40', LOG_LEVEL: 'error', ...o.sagaEnv };
    // The deployed shape, as bench:saga runs it: the HTTP edge, and the saga's actors.
    const edge = await startBenchCluster({ ...env, TARGET: 'orders,notifications,admin,catalog' }, children);
    const actors = await startBenchCluster({ ...env, TARGET: 'inventory,payments,shipping,saga' }, children);
    const driver = sagaDriver({ url: edge.url, token: edge.token, nc });
    const skus = Array.from({ length: 20 }, (_, i) => `BUDGET-${i}`);
    for (const [i, sku] of skus.entries()) {
      const r = await driver.post('/api/products', { sku, name: `Budget item ${i}`, description: 'budget stock', priceCents: 100 + i * 37, currency: 'USD', stock: 1_000_000 });
      if (r.status !== 201) throw new Error(`product: ${r.status} ${JSON.stringify(r.body)}`);
    }
    const items = (i: number) => [{ sku: skus[i % skus.length]!, quantity: 1 + (i % 3) }, ...(i % 4 === 0 ? [{ sku: skus[(i * 7) % skus.length]!, quantity: 1 }] : [])];
    await driver.drive({ rate: o.sagaRate, seconds: o.warmSeconds, items, finishWithinMs: o.sagaFinishWithinMs });
    // The floor: sagas one at a time, each sent when the last is done.
    const alone: number[] = [];
    for (let i = 0; i < o.sagaAlone; i++) alone.push(...(await driver.drive({ rate: 1, count: 1, items: (j) => items(i + j), finishWithinMs: o.sagaFinishWithinMs })).lat);
    const run = await driver.drive({ rate: o.sagaRate, seconds: o.sagaSeconds, items, finishWithinMs: o.sagaFinishWithinMs });
    driver.close();
    const figures = {
      rate: o.sagaRate, seconds: o.sagaSeconds, sentPerSecond: run.sentPerSecond,
      offered: Math.round(o.sagaRate * o.sagaSeconds), accepted: run.acceptedAt.size, finished: run.finished.length, errors: run.errors,
      p50Ms: pct(run.lat, 50), p95Ms: pct(run.lat, 95), p99Ms: pct(run.lat, 99), aloneP95Ms: pct(alone, 95),
    };
    log(`budget: saga ${figures.finished}/${figures.offered} done, p50 ${figures.p50Ms.toFixed(0)} ms, p95 ${figures.p95Ms.toFixed(0)} ms, sent at ${figures.sentPerSecond.toFixed(1)}/s; alone p95 ${figures.aloneP95Ms.toFixed(0)} ms`);
    await edge.stop();
    await actors.stop();
    return figures;
  } finally {
    await nc.close();
    await Promise.all([gw.close(), sms.close(), sink.close()]);
    await nats.stop();
    await db.drop();
  }
}
