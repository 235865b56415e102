// CONTRACTS.md, DLQ administration: "Payment tokens never appear in a DLQ entry or a log
// line." Orders with recognisable tokens go through the real cluster while a wiretap on
// `>` records every message on the bus (work-queue messages vanish once acked); then
// every stream, every table and every log line is searched for the clear tokens.
//
// The cluster runs as two runtimes on one NATS and one database: everything but payments
// with key A, and payments on its own, first with a wrong key (so the charge lands in the
// DLQ, non-retryably), then with the right one (the happy path charges with the token).
import { randomBytes, randomUUID } from 'node:crypto';
import { Writable } from 'node:stream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../kit/index.ts';
import { startRuntime, type Cluster } from '../kit/runtime.ts';
import type { Env } from '../kit/index.ts';
import { createTestDatabase, eventually, startTestNats, tokenSource, type TestNats, FAST_ENV, uid } from '../testing/index.ts';
import { externals, registry, verifier } from '../main.ts';
import { startGatewaySimulator, type RunningGatewaySimulator } from '../simulators/gateway.ts';
import { startSmsSimulator } from '../simulators/sms.ts';
import { startSmtpSink, type SmtpSink } from '../simulators/smtp-sink.ts';

const keyA = randomBytes(32).toString('base64');
const keyB = randomBytes(32).toString('base64');
const secret = () => `SECRET${randomBytes(8).toString('hex')}`;
// The gateway simulator charges any `tok_…` but tok_declined, and refuses (400, echoing
// the source) anything else.
const DLQ_TOKEN = `tok_visa_${secret()}`;
const HAPPY_TOKEN = `tok_visa_${secret()}`;
const ECHOED_TOKEN = `card_${secret()}`;
const TOKENS = [DLQ_TOKEN, HAPPY_TOKEN, ECHOED_TOKEN];
// A charge command from before sealing, in flight across the upgrade: still charged.
const LEGACY_TOKEN = `tok_visa_${secret()}`;

let nats: TestNats;
let db: Awaited<ReturnType<typeof createTestDatabase>>;
let sink: SmtpSink;
let gw: RunningGatewaySimulator;
let sms: Awaited<ReturnType<typeof startSmsSimulator>>;
let tap: NatsConnection;
const wire: string[] = [];
const logs: string[] = [];
const runtimes: Cluster[] = [];

const logger = () => createLogger({
  level: 'trace',
  destination: new Writable({ write(chunk, _enc, done) { logs.push(String(chunk)); done(); } }),
});

async function runtime(env: Env): Promise<Cluster> {
  const r = await startRuntime({
    env: {
      NATS_URL: nats.url, DATABASE_URL: db.url, PORT: '0', HOST: '127.0.0.1', DB_POOL_MAX: '5',
      SMTP_URL: sink.url, SMS_URL: sms.url, PAYMENT_GATEWAY_URL: gw.url, ...FAST_ENV, ...env,
    },
    registry, externals, verifier, log: logger(),
  });
  runtimes.push(r);
  return r;
}

let token: () => Promise<string>;
async function call(r: Cluster, method: string, path: string, body?: unknown) {
  const auth = { authorization: `Bearer ${await token()}` };
  const res = await fetch(r.url + path, { method, headers: body ? { 'content-type': 'application/json', ...auth } : auth, body: body ? JSON.stringify(body) : undefined });
  return { status: res.status, body: await res.json() as any };
}

let front: Cluster;

beforeAll(async () => {
  nats = await startTestNats();
  db = await createTestDatabase();
  sink = await startSmtpSink({ port: 0 });
  gw = await startGatewaySimulator({ port: 0, seed: 7 });
  sms = await startSmsSimulator({ port: 0, seed: 7 });
  tap = await connect({ servers: nats.url });
  tap.subscribe('>', {
    callback: (_err, m) => {
      const headers = m.headers ? [...m.headers].map(([k, vs]) => `${k}: ${vs.join(',')}`).join('\n') : '';
      wire.push(`${m.subject}\n${headers}\n${new TextDecoder().decode(m.data)}`);
    },
  });
  await tap.flush();
  front = await runtime({ TARGET: 'identity,orders,notifications,catalog,inventory,shipping,saga,admin', PAYMENT_TOKEN_KEY: keyA });
  token = tokenSource(front.url);
}, 60_000);

afterAll(async () => {
  for (const r of runtimes.reverse()) await r.stop().catch(() => {});
  await tap?.close();
  await gw?.close();
  await sms?.close();
  await sink?.close();
  await db?.drop().catch(() => {});
  await nats?.stop();
});

const order = async (sku: string, paymentToken: string) => {
  const r = await call(front, 'POST', '/api/orders', { orderId: uid('TOK'), email: 'ana@example.com', phone: '+15551234567', paymentToken, items: [{ sku, quantity: 1 }] });
  expect(r.status).toBe(202);
  return r.body.id as string;
};
const final = (id: string) => eventually(async () => {
  const o = (await call(front, 'GET', `/api/orders/${id}`)).body;
  return ['SHIPPED', 'FAILED'].includes(o.status) ? o : null;
}, { what: `order ${id} final` });

/** Every message now in every stream, subject, headers and data, as text. */
async function streamContents(): Promise<Map<string, string[]>> {
  const jsm = await jetstreamManager(tap);
  const out = new Map<string, string[]>();
  for await (const si of jsm.streams.list()) {
    const texts: string[] = [];
    for (let seq = si.state.first_seq; si.state.messages && seq <= si.state.last_seq; seq++) {
      const m = await jsm.streams.getMessage(si.config.name, { seq }).catch(() => null);
      if (!m) continue;
      const headers = m.header ? [...m.header].map(([k, vs]) => `${k}: ${vs.join(',')}`).join('\n') : '';
      texts.push(`${m.subject}\n${headers}\n${new TextDecoder().decode(m.data)}`);
    }
    out.set(si.config.name, texts);
  }
  return out;
}

/** Every row of every table of the database, as text. */
async function tableContents(): Promise<Map<string, string[]>> {
  const c = new pg.Client({ connectionString: db.url });
  await c.connect();
  try {
    const tables = (await c.query(`select table_schema as s, table_name as t from information_schema.tables
      where table_schema not in ('pg_catalog', 'information_schema') and table_type = 'BASE TABLE'`)).rows as { s: string; t: string }[];
    const out = new Map<string, string[]>();
    for (const { s, t } of tables) out.set(`${s}.${t}`, (await c.query(`select row_to_json(x)::text as row from "${s}"."${t}" x`)).rows.map((r) => r.row as string));
    return out;
  } finally {
    await c.end();
  }
}

const leaks = (where: string, texts: string[]) =>
  texts.flatMap((text) => TOKENS.flatMap((tok) => [tok, tok.slice(-22)].filter((part) => text.includes(part)).map(() => `${where}: ${text.slice(0, 300)}`)));

describe('payment tokens', () => {
  it('never appear in a message, a DLQ entry, a table or a log line, and the happy path still charges with the token', async () => {
    const sku = uid('TOKSKU');
    expect((await call(front, 'POST', '/api/products', { sku, name: 'A thing', priceCents: 700, currency: 'USD', stock: 50 })).status).toBe(201);

    // 1. Payments holds a key that did not seal the token: the charge cannot open it and
    //    goes to the DLQ at once, without the token in its error.
    const wrongPayments = await runtime({ TARGET: 'payments', PAYMENT_TOKEN_KEY: keyB });
    const dlqOrder = await order(sku, DLQ_TOKEN);
    // What `nats stream view ORDERS` shows: the sealed token only.
    const event = await eventually(() => wire.find((w) => w.startsWith('orders.created\n') && w.includes(dlqOrder)), { what: 'orders.created published' });
    expect(leaks('orders.created', [event!])).toEqual([]);
    const entry = await eventually(async () => {
      const { items } = (await call(front, 'GET', '/api/admin/dlq?stream=PAYMENTS')).body;
      return (items as any[]).find((e) => e.data?.orderUuid === dlqOrder);
    }, { what: 'the charge in the DLQ' });
    expect(entry).toMatchObject({ subject: 'payments.cmd.charge', reason: 'non-retryable' });
    expect(entry.error).toMatch(/payment token of order .* does not open/);
    expect(entry.data.sealedSource).toMatch(/^v1\./);
    await wrongPayments.stop();
    runtimes.splice(runtimes.indexOf(wrongPayments), 1);

    // 2. With the right key (rotated: a new key seals, A still opens) the happy path charges
    //    the clear token, and a gateway answer that echoes the token is masked.
    await runtime({ TARGET: 'payments', PAYMENT_TOKEN_KEY: `${randomBytes(32).toString('base64')},${keyA}` });
    const happy = await order(sku, HAPPY_TOKEN);
    const echoed = await order(sku, ECHOED_TOKEN);
    const o = await final(happy);
    expect(o).toMatchObject({ status: 'SHIPPED', totalCents: 700 });
    expect(gw.sim.chargesFor(happy).map((c) => c.source)).toEqual([HAPPY_TOKEN]);
    const bad = await final(echoed);
    expect(bad).toMatchObject({ status: 'FAILED', failureReason: 'PAYMENT_FAILED' });
    expect(gw.sim.chargesFor(echoed)).toEqual([]);
    // The clear token reached the gateway only: its refusal echoed it.
    await eventually(() => logs.some((l) => l.includes('"outcome":"payment-failed"')), { what: 'the refused charge logged' });

    // An upgrade loses nothing: an old command with the token in clear is still charged,
    // and nothing of that token is logged either.
    const legacy = randomUUID();
    await jetstream(tap).publish('payments.cmd.charge', JSON.stringify({ orderUuid: legacy, amount: 300, currency: 'USD', source: LEGACY_TOKEN }));
    await eventually(() => gw.sim.chargesFor(legacy).length === 1, { what: 'the legacy command charged' });
    expect(gw.sim.chargesFor(legacy)[0]).toMatchObject({ source: LEGACY_TOKEN, status: 'succeeded', amount: 300 });
    await eventually(() => wire.some((w) => w.startsWith('payments.evt.charged\n') && w.includes(legacy)), { what: 'the legacy charge answered' });

    // Everything said and stored so far.
    const mail = [...sink.messages().map((m) => JSON.stringify(m)), ...sms.sim.messages().map((m) => JSON.stringify(m))];
    expect(mail.length).toBeGreaterThan(0);
    const streams = await streamContents();
    const tables = await tableContents();
    for (const name of ['ORDERS', 'SAGA', 'DLQ']) expect(streams.get(name)?.length, name).toBeGreaterThan(0);
    const created = wire.filter((w) => w.startsWith('orders.created\n'));
    expect(created.length).toBeGreaterThanOrEqual(3);
    for (const w of created) expect(w).toMatch(/"paymentTokenSealed":"v1\.[\w-]+\.[\w-]+\.[\w-]+\.[\w-]+"/);
    expect(wire.filter((w) => w.startsWith('payments.cmd.charge\n') && w.includes('"sealedSource":"v1.')).length).toBeGreaterThanOrEqual(3);
    expect(tables.get('orders.orders')!.every((r) => /"payment_token":"v1\./.test(r))).toBe(true);
    expect(logs.length).toBeGreaterThan(20);

    const found = [
      ...leaks('on the wire', wire),
      ...[...streams].flatMap(([name, texts]) => leaks(`stream ${name}`, texts)),
      ...[...tables].flatMap(([name, rows]) => leaks(`table ${name}`, rows)),
      ...leaks('log', logs),
      ...leaks('mail or SMS', mail),
      ...logs.filter((l) => l.includes(LEGACY_TOKEN.slice(-22))).map((l) => `log of the legacy token: ${l}`),
    ];
    expect(found).toEqual([]);
  }, 120_000);
});
