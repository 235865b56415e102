// GET /asyncapi.json: every subject the code publishes, with its stream and payload schema,
// checked against the sources the cluster runs on (contracts/, streams/), and structurally
// valid AsyncAPI 3.
import { readFileSync } from 'node:fs';
import { Ajv } from 'ajv';
import { describe, expect, it } from 'vitest';
import { Subjects } from '../../contracts/commerce.ts';
import { FundingSubjects } from '../../contracts/funding.ts';
import { LendingSubjects } from '../../contracts/lending.ts';
import { subjectMatches } from '../../contracts/messages.ts';
import { OrderStatus, OrderSubjects } from '../../contracts/orders.ts';
import { createApp, createRoutes, createRouteTable } from '../kit/http.ts';
import { createLogger, createMetrics, readSpecs, STREAMS_DIR } from '../kit/index.ts';
import { docsRoutes } from './routes.ts';

const { version } = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
const app = createApp({ log: createLogger({ level: 'silent' }), metrics: createMetrics(), readiness: async () => [] });
docsRoutes(createRoutes({ app, table: createRouteTable() }), { version });
const res = await app.request('/asyncapi.json');
const doc = await res.clone().json() as any;
const specs = readSpecs(STREAMS_DIR);

/** Every subject the services publish, from the contracts' subject constants (the outbox takes no other). */
const published: string[] = [
  ...Object.values<unknown>(Subjects).filter((s): s is string => typeof s === 'string'),
  ...OrderStatus.filter((s) => s !== 'PENDING').map((s) => Subjects.status(s)),
  ...Object.values(OrderSubjects), ...Object.values(LendingSubjects), ...Object.values(FundingSubjects),
];
/** The stream start-up provisions whose subjects take `subject`. */
const streamFor = (subject: string) => specs.streams.find((s) => (s.config.subjects ?? []).some((p) => subjectMatches(p, subject)))?.config.name;
/** The channel a concrete subject is published on: its title is the subject or pattern. */
const channelFor = (subject: string) => Object.entries<any>(doc.channels).find(([, ch]) => subjectMatches(ch.title, subject));
const resolve = (ref: string) => ref.replace(/^#\//, '').split('/').reduce<any>((o, k) => o?.[k], doc);

describe('GET /asyncapi.json', () => {
  it('is JSON, with the security headers', () => {
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^application\/json/);
    expect(res.headers.get('x-content-type-options')).toBe('nosniff');
  });

  it('has every subject the code publishes, on its stream, with a payload schema that compiles', () => {
    expect(published.length).toBeGreaterThan(25);
    const ajv = new Ajv({ strict: false, validateFormats: false });
    for (const subject of published) {
      const found = channelFor(subject);
      expect(found, subject).toBeDefined();
      const [, ch] = found!;
      expect(ch['x-jetstream'].stream, subject).toBe(streamFor(subject));
      const message = resolve(Object.values<any>(ch.messages)[0].$ref);
      expect(message.payload.type ?? message.payload.oneOf, subject).toBeDefined();
      expect(() => ajv.compile(message.payload), subject).not.toThrow();
      // Someone sends it, and every channel of a consumed stream names who reads it.
      expect(Object.values<any>(doc.operations).some((o) => o.action === 'send' && o.channel.$ref === `#/channels/${found![0]}`), subject).toBe(true);
    }
  });

  it('the payload schemas say what consumers accept: a real orders.created passes, one without its email fails', () => {
    const ajv = new Ajv({ strict: false, validateFormats: false });
    const validate = ajv.compile(resolve(Object.values<any>(channelFor('orders.created')![1].messages)[0].$ref).payload);
    const event = {
      id: '0b7e2f2a-4a7e-4b8e-9d56-9a3b3c1f2e10', orderId: 'A-1', email: 'ana@example.com', items: [{ sku: 'SKU-1', quantity: 1 }],
      paymentTokenSealed: 'v1.k.x', createdAt: new Date().toISOString(),
    };
    const { email: _, ...noEmail } = event;
    expect(validate(noEmail)).toBe(false);
    if (!validate(event)) expect(validate.errors).toEqual([]);
  });

  it('covers every stream and every durable consumer that streams/ provisions (KV buckets aside)', () => {
    const channels = Object.values<any>(doc.channels);
    for (const s of specs.streams.filter((x) => !x.config.name.startsWith('KV_'))) {
      for (const pattern of s.config.subjects ?? []) {
        expect(channels.some((ch) => ch['x-jetstream'].stream === s.config.name && (subjectMatches(pattern, ch.title) || ch.title === pattern)), `${s.config.name} ${pattern}`).toBe(true);
      }
    }
    const readers = Object.values<any>(doc.operations).filter((o) => o.action === 'receive').map((o) => `${o['x-jetstream'].stream}/${o['x-jetstream'].durable}`);
    for (const c of specs.consumers) expect(readers, `${c.stream}/${c.config.durable_name}`).toContain(`${c.stream}/${c.config.durable_name}`);
    // The notifications durable on ORDERS reads orders.created only; saga's on SAGA_REPLIES reads all nine replies.
    expect(readers.filter((r) => r === 'SAGA_REPLIES/saga')).toHaveLength(9);
  });

  it('is structurally valid AsyncAPI 3.0', () => {
    expect(doc.asyncapi).toBe('3.0.0');
    expect(doc.info).toMatchObject({ title: expect.any(String), version });
    const KEY = /^[A-Za-z0-9_\-]+$/;
    expect(Object.keys(doc.channels).length).toBeGreaterThan(0);
    for (const [id, ch] of Object.entries<any>(doc.channels)) {
      expect(id).toMatch(KEY);
      expect(typeof ch.address, id).toBe('string');
      // Every {parameter} of an address is declared, and nothing else is.
      const params = [...ch.address.matchAll(/\{([^}]+)\}/g)].map((m) => m[1]);
      expect(Object.keys(ch.parameters ?? {}).sort(), id).toEqual(params.sort());
      expect(ch.address, id).not.toMatch(/[*>]/);
      for (const m of Object.values<any>(ch.messages)) {
        expect(m.$ref, id).toMatch(/^#\/components\/messages\//);
        expect(resolve(m.$ref)?.payload, id).toBeTypeOf('object');
      }
    }
    expect(Object.keys(doc.operations).length).toBeGreaterThan(0);
    for (const [id, op] of Object.entries<any>(doc.operations)) {
      expect(id).toMatch(KEY);
      expect(['send', 'receive'], id).toContain(op.action);
      const channel = resolve(op.channel.$ref);
      expect(channel, id).toBeDefined();
      // An operation's messages must be messages of its channel (spec 3.0, Operation Object).
      for (const m of op.messages) {
        expect(m.$ref.startsWith(`${op.channel.$ref}/messages/`), id).toBe(true);
        expect(resolve(m.$ref), id).toBeDefined();
      }
    }
    for (const [id, m] of Object.entries<any>(doc.components.messages)) {
      expect(id).toMatch(KEY);
      expect(m.payload, id).toBeTypeOf('object');
      expect(m.payload.$schema, id).toBeUndefined();
      expect(m.contentType ?? doc.defaultContentType, id).toBe('application/json');
    }
    for (const server of Object.values<any>(doc.servers)) expect(server).toMatchObject({ host: expect.any(String), protocol: 'nats' });
  });
});
