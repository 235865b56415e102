// Contract tests: (1) the message schemas change only in ways old and new code can both
// read (against contracts/schemas.lock.json); (2) every message the running flows publish
// fits the schema its consumers parse it with. `UPDATE_CONTRACT_LOCK=1 npx vitest run
// contracts/compat.test.ts` records a compatible change (or a new subject) in the lock.
import { readFileSync, writeFileSync } from 'node:fs';
import { connect } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { applicationBody, waitForStatus } from '../services/funding/test-fixtures.ts';
import { eventually, startCommerce, uid, type Commerce } from '../services/testing/index.ts';
import { breakingChanges, compareWithLock, currentSchemas, type SchemaLock } from './compat.ts';
import { MessageContracts, subjectMatches } from './messages.ts';

const LOCK = new URL('./schemas.lock.json', import.meta.url).pathname;

describe('message schemas against the released lock', () => {
  it('has no breaking change, and no change or new subject left out of the lock', () => {
    const lock = JSON.parse(readFileSync(LOCK, 'utf8')) as SchemaLock;
    const current = currentSchemas();
    const r = compareWithLock(lock, current);
    expect(r.breaking).toEqual([]);
    if (process.env.UPDATE_CONTRACT_LOCK && (r.changed.length || r.added.length)) writeFileSync(LOCK, `${JSON.stringify(current, null, 2)}\n`);
    else expect({ changed: r.changed, added: r.added }).toEqual({ changed: [], added: [] });
  });

  const base = { type: 'object', properties: { id: { type: 'string' }, n: { type: 'integer' } }, required: ['id', 'n'], additionalProperties: {} };
  it('allows an added optional field', () => {
    expect(breakingChanges(base, { ...base, properties: { ...base.properties, note: { type: 'string' } } })).toEqual([]);
  });
  it('refuses a removed field, a new required one, a type change, a dropped requirement and an enum change', () => {
    expect(breakingChanges(base, { ...base, properties: { id: { type: 'string' } }, required: ['id'] })).toEqual([expect.stringMatching(/\$\.n: removed/)]);
    expect(breakingChanges(base, { ...base, properties: { ...base.properties, x: { type: 'string' } }, required: ['id', 'n', 'x'] })).toEqual([expect.stringMatching(/\$\.x: added as required/)]);
    expect(breakingChanges(base, { ...base, properties: { ...base.properties, n: { type: 'string' } } })).toEqual([expect.stringMatching(/\$\.n: changed/)]);
    expect(breakingChanges(base, { ...base, required: ['id'] })).toEqual([expect.stringMatching(/\$\.n: no longer required/)]);
    expect(breakingChanges({ enum: ['a', 'b'] }, { enum: ['a', 'b', 'c'] })).toEqual([expect.stringMatching(/changed/)]);
  });
  it('refuses a field added to an object that refuses unknown fields', () => {
    const closed = { ...base, additionalProperties: false };
    expect(breakingChanges(closed, { ...closed, properties: { ...base.properties, note: { type: 'string' } } })).toEqual([expect.stringMatching(/refuses unknown fields/)]);
  });
});

describe('every message the flows publish fits its consumers\' schema', () => {
  let k: Commerce;
  const seen: { subject: string; data: Uint8Array }[] = [];
  let stop: () => Promise<void>;
  beforeAll(async () => {
    k = await startCommerce();
    // A plain subscriber sees every JetStream publish on its subject, work-queue ones too
    // (those are gone from their stream once acked).
    const nc = await connect({ servers: k.c.nats.url });
    const sub = nc.subscribe('>');
    void (async () => { for await (const m of sub) seen.push({ subject: m.subject, data: m.data }); })();
    stop = async () => { await nc.drain(); };
  });
  afterAll(async () => { await stop?.(); await k?.close(); });

  it('runs an order to SHIPPED, one to FAILED, a lending order and a funding payout, and checks every payload', async () => {
    const sku = uid('SKU');
    await k.product(sku, 5);
    const shipped = await k.order([{ sku, quantity: 1 }]);
    const failed = await k.order([{ sku, quantity: 1 }], { paymentToken: 'tok_declined' });
    const lending = await k.c.post('/api/lending/orders', { investorId: 'inv-contract', items: [{ loanId: 'L-000101', amount: 100 }, { loanId: 'L-000102', amount: 50 }] });
    const funding = await k.c.post('/api/funding/applications', applicationBody());
    expect([shipped.status, failed.status, lending.status, funding.status]).toEqual([202, 202, 202, 202]);
    expect((await k.final(shipped.body.id)).status).toBe('SHIPPED');
    expect((await k.final(failed.body.id)).status).toBe('FAILED');
    await eventually(async () => (await k.c.get(`/api/lending/orders/${lending.body.id}`)).body.status !== 'IN_PROGRESS', { what: 'lending order final', timeoutMs: 60_000 });
    await waitForStatus(k.c.get, funding.body.id, 'disbursed');

    // What the streams hold (events) or held (commands) goes through the contract table.
    const streams = await k.c.deps.nats.jsm.streams.list().next();
    const filters = streams.filter((s) => !['DLQ', 'ADVISORIES'].includes(s.config.name) && !s.config.name.startsWith('KV_'))
      .flatMap((s) => s.config.subjects ?? []);
    const published = seen.filter((m) => filters.some((f) => subjectMatches(f, m.subject)));
    const problems: string[] = [];
    const subjectsSeen = new Set<string>();
    for (const m of published) {
      const contract = MessageContracts.find((c) => subjectMatches(c.subject, m.subject));
      if (!contract) { problems.push(`${m.subject}: published, but no contract names it`); continue; }
      subjectsSeen.add(contract.subject);
      const parsed = contract.schema.safeParse(JSON.parse(new TextDecoder().decode(m.data)));
      if (!parsed.success) problems.push(`${m.subject}: ${parsed.error.issues.map((i) => `${i.path.join('.')} ${i.message}`).join('; ')}`);
    }
    expect(problems).toEqual([]);
    // The flows above cross most of the table; the rest (release, refund, cancel...) are compensations.
    expect(subjectsSeen.size).toBeGreaterThanOrEqual(15);
  });
});
