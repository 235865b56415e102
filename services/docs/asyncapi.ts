// The AsyncAPI 3.0 document of every NATS subject (CONTRACTS.md: GET /asyncapi.json), built
// from the two sources the cluster itself runs on: contracts/messages.ts (subject -> stream,
// zod schema) and streams/ (the streams and durable consumers start-up provisions). Nothing is
// written by hand, so the document cannot drift from what is published and consumed.
import { z } from 'zod';
import { OrderStatus } from '../../contracts/orders.ts';
import { Subjects } from '../../contracts/commerce.ts';
import { MessageContracts, subjectMatches, type MessageContract } from '../../contracts/messages.ts';
import { ADVISORY_STREAM, DLQ_STREAM, DlqHeaders, H, readSpecs, type ConsumerSpec, type StreamSpec } from '../kit/index.ts';

type Json = Record<string, unknown>;

/** Concrete subjects behind the table's patterns, so a pattern's `{parameter}` can list its values. */
const KNOWN_SUBJECTS = OrderStatus.filter((s) => s !== 'PENDING').map((s) => Subjects.status(s));

/** Headers every published message may carry (the outbox and the kit's publishers set them). */
const MESSAGE_HEADERS = {
  type: 'object',
  properties: {
    [H.msgId]: { type: 'string', description: 'JetStream de-duplication id (the outbox row id; a redrive sets a fresh one).' },
    [H.logicalId]: { type: 'string', description: 'The logical message id, kept across DLQ redrives (consumers\' inbox key).' },
    [H.requestId]: { type: 'string', description: 'The X-Request-Id of the HTTP request that caused the message.' },
    traceparent: { type: 'string', description: 'W3C trace context of the work that published it.' },
  },
};

/** A channel or component id: AsyncAPI keys allow letters, digits, `_` and `-` only. */
const idOf = (subject: string) => subject.replace(/\.\*/g, '').replace(/\.>/g, '').replace(/[^A-Za-z0-9]+/g, '_').replace(/^_+/, '');

/** `saga.step.*` -> `saga.step.{status}`, with the values the known subjects take there; `names` name the wildcards in order. */
function addressOf(pattern: string, names: string[] = []): { address: string; parameters?: Json } {
  const tokens = pattern.split('.');
  if (!tokens.some((t) => t === '*' || t === '>')) return { address: pattern };
  const parameters: Json = {};
  let n = 0;
  const address = tokens.map((t, i) => {
    if (t !== '*' && t !== '>') return t;
    const name = names[n++] ?? (t === '>' ? 'rest' : `token${i}`);
    const values = [...new Set(KNOWN_SUBJECTS.filter((s) => subjectMatches(pattern, s)).map((s) => s.split('.')[i]!))];
    parameters[name] = values.length
      ? { enum: values, description: `the ${name} (one subject token)` }
      : { description: t === '>' ? 'one or more subject tokens' : 'one subject token' };
    return `{${name}}`;
  }).join('.');
  return { address, parameters };
}

/** JSON Schema (draft-07, which AsyncAPI's default schema format extends) of what consumers accept. */
function payloadOf(c: MessageContract): Json {
  const { $schema: _, ...schema } = z.toJSONSchema(c.schema, { target: 'draft-7', io: 'input', unrepresentable: 'any' }) as Json;
  return schema;
}

const describeStream = (s: StreamSpec | undefined, name: string) =>
  s ? `Stream ${name}: ${s.config.retention ?? 'limits'} retention, ${s.config.storage ?? 'file'} storage${s.config.max_age ? `, kept ${Math.round(Number(s.config.max_age) / 1e9 / 86_400)} days` : ''}.` : `Stream ${name}.`;

/** Whether a consumer of `stream` with these filters reads messages published on `subject` (a subject or pattern). */
const reads = (c: ConsumerSpec, stream: string, subject: string) => {
  if (c.stream !== stream) return false;
  const filters = [c.config.filter_subject, ...(c.config.filter_subjects ?? [])].filter((f): f is string => Boolean(f));
  return !filters.length || filters.some((f) => subjectMatches(f, subject) || subjectMatches(subject, f));
};

/** Build the document. `buildAsyncApi({ streamsDir: STREAMS_DIR, version: '0.1.0' })` */
export function buildAsyncApi(opts: { streamsDir: string; version: string }): Json {
  const specs = readSpecs(opts.streamsDir);
  const streamOf = (name: string) => specs.streams.find((s) => s.config.name === name);
  const channels: Json = {};
  const operations: Json = {};
  const messages: Json = {};

  const addChannel = (o: {
    subject: string; stream: string; title: string; description: string; payload: Json; headers: Json; keys?: readonly string[];
    send?: string; consumers: ConsumerSpec[]; params?: string[];
  }) => {
    const id = idOf(o.subject);
    const spec = streamOf(o.stream);
    const { address, parameters } = addressOf(o.subject, o.params);
    messages[id] = {
      name: o.subject, title: o.title, contentType: 'application/json', payload: o.payload, headers: o.headers,
      ...(o.keys?.length ? { 'x-business-keys': o.keys } : {}),
    };
    channels[id] = {
      address, title: o.subject, description: `${o.description} ${describeStream(spec, o.stream)}`,
      ...(parameters ? { parameters } : {}),
      messages: { [id]: { $ref: `#/components/messages/${id}` } },
      'x-jetstream': {
        stream: o.stream, streamSubjects: spec?.config.subjects ?? [], retention: spec?.config.retention ?? 'limits',
        consumers: o.consumers.map((c) => c.config.durable_name),
      },
    };
    const message = [{ $ref: `#/channels/${id}/messages/${id}` }];
    if (o.send) operations[`send_${id}`] = { action: 'send', title: `Publish ${o.subject}`, summary: o.send, channel: { $ref: `#/channels/${id}` }, messages: message };
    for (const c of o.consumers) {
      operations[`receive_${id}_${idOf(c.config.durable_name)}`] = {
        action: 'receive', title: `${c.config.durable_name} reads ${o.subject}`,
        summary: `Durable pull consumer ${c.config.durable_name} on ${c.stream}` +
          `${c.config.max_deliver ? `, up to ${c.config.max_deliver} deliveries, then the DLQ` : ''}.`,
        channel: { $ref: `#/channels/${id}` }, messages: message,
        'x-jetstream': { stream: c.stream, durable: c.config.durable_name, ackPolicy: c.config.ack_policy ?? 'explicit', maxDeliver: c.config.max_deliver ?? -1 },
      };
    }
  };

  for (const c of MessageContracts) {
    addChannel({
      subject: c.subject, stream: c.stream, title: c.subject, keys: c.keys,
      description: `Published through the transactional outbox (at least once; de-duplicated by Nats-Msg-Id).`,
      payload: payloadOf(c), headers: MESSAGE_HEADERS, send: 'Written to the outbox in the same transaction as the change it announces; the relay publishes it.',
      consumers: specs.consumers.filter((k) => reads(k, c.stream, c.subject)),
      params: c.subject.startsWith('saga.') ? ['status'] : [],
    });
  }

  // The DLQ: a copy of the original payload, with where it came from and why it failed.
  const dlqHeaders = {
    type: 'object',
    properties: Object.fromEntries([
      ...Object.values(DlqHeaders).map((h) => [h, { type: 'string' }]),
      [H.msgId, { type: 'string', description: '<stream>:<seq> of the original' }],
    ]),
  };
  addChannel({
    subject: 'dlq.*.*', stream: DLQ_STREAM, title: 'dead letters', params: ['stream', 'consumer'],
    description: 'dlq.<stream>.<consumer>: a message its consumer gave up on, its payload unchanged; read and redriven through /api/admin/dlq.',
    payload: { description: 'the original message payload, unchanged' }, headers: dlqHeaders,
    send: 'Published by the delivery core (a non-retryable error or a message failing its schema) and by the DLQ mover (max deliveries).',
    consumers: [],
  });
  // Server advisories: NATS publishes them; the DLQ mover reads them from the ADVISORIES stream.
  addChannel({
    subject: '$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.*.*', stream: ADVISORY_STREAM, title: 'max-deliveries advisories', params: ['stream', 'consumer'],
    description: 'Published by the NATS server when a message reaches its consumer\'s max_deliver; the DLQ mover copies the original to the DLQ.',
    payload: {
      type: 'object', description: 'io.nats.jetstream.advisory.v1.max_deliver',
      properties: { type: { const: 'io.nats.jetstream.advisory.v1.max_deliver' }, stream: { type: 'string' }, consumer: { type: 'string' }, stream_seq: { type: 'integer' }, deliveries: { type: 'integer' } },
      required: ['stream', 'consumer', 'stream_seq'],
    },
    headers: { type: 'object' }, consumers: specs.consumers.filter((k) => k.stream === ADVISORY_STREAM),
  });

  return {
    asyncapi: '3.0.0',
    info: {
      title: 'orderflow messages',
      version: opts.version,
      description: 'Every NATS JetStream subject orderflow publishes or consumes: its stream, its durable consumers and its payload schema. ' +
        'Generated from contracts/messages.ts and streams/ at start-up. Work-queue streams hold commands for one actor type; limits streams hold events with one durable consumer per subscriber.',
    },
    defaultContentType: 'application/json',
    // The real host names stay out of a public document: NATS is private to the cluster.
    servers: { nats: { host: 'nats:4222', protocol: 'nats', description: 'The cluster\'s NATS with JetStream (NATS_URL); reachable only from inside the cluster.' } },
    channels,
    operations,
    components: { messages },
  };
}
