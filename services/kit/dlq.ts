// The dead-letter queue: one stream (DLQ, subjects dlq.<stream>.<consumer>) whose
// entries carry the original payload and headers plus where it came from and why.
//
// Two ways in:
//  - a handler gives up (NonRetryableError, bad schema): the worker publishes the
//    copy, then term()s the original;
//  - max_deliver runs out: the server emits a MAX_DELIVERIES advisory (core NATS,
//    captured by the ADVISORIES stream); the mover fetches the original by sequence,
//    publishes the copy with Nats-Msg-Id <stream>:<seq> (advisories can repeat), then
//    deletes the original.
import { AckPolicy, DeliverPolicy, JetStreamApiError, type JetStreamClient, type JetStreamManager, type StoredMsg } from '@nats-io/jetstream';
import type { KV } from '@nats-io/kv';
import { headers as natsHeaders, nanos, type MsgHdrs, type NatsConnection } from '@nats-io/transport-node';
import type { ZodType } from 'zod';
import { subjectMatches } from '../../contracts/subjects.ts';
import { HttpError } from './errors.ts';
import type { Logger } from './log.ts';
import { H } from './nats.ts';
import { pullLoop } from './pull.ts';

export const DLQ_STREAM = 'DLQ';
export const ADVISORY_STREAM = 'ADVISORIES';
export const DLQ_MOVER = 'dlq-mover';
export const ERRORS_BUCKET = 'dlq-errors';

/** Headers of a DLQ entry: where the original came from and why it failed. */
export const DlqHeaders = {
  stream: 'Orderflow-Dlq-Stream',
  consumer: 'Orderflow-Dlq-Consumer',
  subject: 'Orderflow-Dlq-Subject',
  seq: 'Orderflow-Dlq-Seq',
  deliveries: 'Orderflow-Dlq-Deliveries',
  reason: 'Orderflow-Dlq-Reason',
  error: 'Orderflow-Dlq-Error',
  at: 'Orderflow-Dlq-At',
} as const;
const D = DlqHeaders;
const DLQ_HEADERS = new Set<string>([...Object.values(D), H.msgId].map((h) => h.toLowerCase()));

export type DlqReason = 'max-deliveries' | 'non-retryable' | 'invalid-message';

export type DlqEntry = {
  id: string; stream: string; consumer: string; subject: string; seq: number;
  deliveries: number; reason: string; error: string; at: string; data: unknown;
  headers: Record<string, string>;
};

export type DlqFilter = {
  stream?: string; consumer?: string; subject?: string; reason?: string;
  /** A business key (order, application, lending order or loan id) the payload carries. */
  key?: string;
};
export type DlqPageQuery = DlqFilter & { limit?: number; cursor?: string };
export type DlqPage = { items: DlqEntry[]; nextCursor: string | null; total: number };

/**
 * What the DLQ knows of message contracts (contracts/messages.ts gives it): the schema a
 * subject's payload must fit and the business keys a payload carries.
 */
export type DlqContracts = {
  schemaFor(subject: string): ZodType | undefined;
  keysOf(subject: string, data: unknown): string[];
};

/** NATS did not answer: every DLQ endpoint says 503 rather than an empty list or a false 404. */
export class DlqUnavailableError extends HttpError {
  override name = 'DlqUnavailableError';
  constructor(reason: string, options?: { cause?: unknown }) {
    super(503, 'UNAVAILABLE', 'NATS is unreachable, so the DLQ cannot be read or changed; retry shortly');
    this.cause = options?.cause ?? reason;
  }
}

/** Key of a message's last error in the dlq-errors bucket. */
export const errorKey = (stream: string, seq: number) => `${stream}.${seq}`;

// Fields whose values are secrets (a payment token, a card `source`, a password). Their
// values are cut out of error texts before those are logged or stored in a DLQ entry.
const SECRET_FIELD = /token|secret|password|passphrase|^source$|^iban$|card/i;
const STRING_FIELD = /"([^"\\]{1,64})"\s*:\s*"((?:[^"\\]|\\.){4,2048})"/g;

/**
 * An error text with the message's secret field values (paymentToken, source, ...) cut
 * out, so a handler that quotes its input cannot put a token in a log line or a DLQ
 * entry. Reads the raw bytes, so a payload that is not valid JSON is covered too.
 * `redactSecrets('declined: tok_123', '{"source":"tok_123"}') // 'declined: [redacted]'`
 */
export function redactSecrets(text: string, payload: Uint8Array | string | undefined): string {
  if (!payload || !text) return text;
  const raw = typeof payload === 'string' ? payload : new TextDecoder().decode(payload);
  let out = text;
  for (const [, field, value] of raw.matchAll(STRING_FIELD)) {
    if (!SECRET_FIELD.test(field!)) continue;
    let v = value!;
    try { v = JSON.parse(`"${value}"`) as string; } catch { /* keep the escaped form */ }
    for (const form of new Set([v, value!])) if (form.length >= 4) out = out.split(form).join('[redacted]');
  }
  return out;
}

/** Publish the DLQ copy of a message. `await sendToDlq(js, { stream, consumer, subject, seq, ... })` */
export async function sendToDlq(js: JetStreamClient, e: {
  stream: string; consumer: string; subject: string; seq: number; deliveries: number;
  reason: DlqReason; error: string; data: Uint8Array; headers?: MsgHdrs;
}): Promise<void> {
  const h = natsHeaders();
  if (e.headers) for (const [k, vs] of e.headers) if (!DLQ_HEADERS.has(k.toLowerCase())) for (const v of vs) h.append(k, v);
  h.set(D.stream, e.stream);
  h.set(D.consumer, e.consumer);
  h.set(D.subject, e.subject);
  h.set(D.seq, String(e.seq));
  h.set(D.deliveries, String(e.deliveries));
  h.set(D.reason, e.reason);
  // Header values cannot hold newlines; the first 1000 characters of the error are plenty.
  h.set(D.error, redactSecrets(e.error, e.data).replace(/[\r\n]+/g, ' ').slice(0, 1000));
  h.set(D.at, new Date().toISOString());
  await js.publish(`dlq.${e.stream}.${e.consumer}`, e.data, { headers: h, msgID: `${e.stream}:${e.seq}` });
}

type RawMsg = { seq: number; data: Uint8Array; headers: MsgHdrs | undefined };

function toEntry(m: RawMsg): DlqEntry {
  const get = (k: string) => m.headers?.get(k) ?? '';
  const headers: Record<string, string> = {};
  if (m.headers) for (const [k, vs] of m.headers) if (!DLQ_HEADERS.has(k.toLowerCase())) headers[k] = vs[0] ?? '';
  let data: unknown;
  const text = new TextDecoder().decode(m.data);
  try { data = JSON.parse(text); } catch { data = text; }
  return {
    id: String(m.seq), stream: get(D.stream), consumer: get(D.consumer), subject: get(D.subject),
    seq: Number(get(D.seq)), deliveries: Number(get(D.deliveries)), reason: get(D.reason),
    error: get(D.error), at: get(D.at), data, headers,
  };
}
const stored = (m: StoredMsg): RawMsg => ({ seq: m.seq, data: m.data, headers: m.header });

const token = (s: string | undefined) => (s && /^[A-Za-z0-9_-]+$/.test(s) ? s : '*');

// A cursor is the DLQ sequence of the last entry a page showed: entries are listed in
// sequence order and new ones only ever come after, so the next page starts behind it
// and no entry is shown twice or skipped, whatever is deleted or added in between.
const encodeCursor = (seq: number) => Buffer.from(`dlq:${seq}`).toString('base64url');
function decodeCursor(cursor: string): number {
  const m = /^dlq:([1-9][0-9]{0,15})$/.exec(Buffer.from(cursor, 'base64url').toString());
  if (!m || !Number.isSafeInteger(Number(m[1]))) throw new HttpError(400, 'VALIDATION_FAILED', 'invalid request: cursor', [{ field: 'cursor', message: 'not a cursor this API returned' }]);
  return Number(m[1]);
}

// How many messages one fetch of a scan asks for.
const SCAN_BATCH = 1000;
// A fetch returns at once when messages are there; this bounds one that waits for
// messages deleted since the scan began.
const SCAN_EXPIRES_MS = 1000;

export type DlqAdmin = ReturnType<typeof createDlqAdmin>;

/**
 * List, show, redrive and delete DLQ entries. Each NATS call gets `timeoutMs`; a call
 * that fails for any reason other than "no such message" is a DlqUnavailableError (503).
 * `const dlq = createDlqAdmin({ ...nats, contracts: dlqContracts })`
 */
export function createDlqAdmin({ js, jsm, nc, contracts, timeoutMs = 1500 }: {
  js: JetStreamClient; jsm: JetStreamManager; nc?: NatsConnection; contracts?: DlqContracts; timeoutMs?: number;
}) {
  // An id is the DLQ sequence as the list shows it: digits only, so `18.0`, `0x12` or
  // `+18` are not other names for entry 18.
  const seqOf = (id: string): number | null => (/^[1-9][0-9]*$/.test(id) && Number.isSafeInteger(Number(id)) ? Number(id) : null);

  // The client's own request timeout is 10 s, and while disconnected it queues requests
  // rather than failing them: bound every call here instead.
  const call = async <T>(p: Promise<T>, what: string): Promise<T> => {
    let timer: NodeJS.Timeout | undefined;
    try {
      return await Promise.race([p, new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new DlqUnavailableError(`${what}: no answer in ${timeoutMs} ms`)), timeoutMs);
      })]);
    } catch (err) {
      if (err instanceof HttpError) throw err;
      throw new DlqUnavailableError(`${what}: ${String(err)}`, { cause: err });
    } finally {
      clearTimeout(timer);
    }
  };
  // A disconnected client answers rtt() at once with an error: no waiting for a timeout.
  const reachable = async () => { if (nc) await call(nc.rtt(), 'nats'); };

  const readMsg = async (seq: number): Promise<StoredMsg | null> =>
    await call(jsm.streams.getMessage(DLQ_STREAM, { seq }), 'get message');

  const subjectFilter = (f: DlqFilter) => `dlq.${token(f.stream)}.${token(f.consumer)}`;
  // Filters the DLQ subject cannot express: they need each entry's headers or payload.
  const needsContent = (f: DlqFilter) => Boolean(f.subject || f.reason || f.key || (f.stream && token(f.stream) === '*') || (f.consumer && token(f.consumer) === '*'));
  // Decides on the raw message, so that a scan of thousands decodes only what it returns.
  const matches = (f: DlqFilter) => {
    // Printable ASCII without quote or backslash is written as is by JSON.stringify: a
    // payload whose bytes do not hold it cannot match, and is not parsed.
    const plainKey = f.key && /^[\x20\x21\x23-\x5b\x5d-\x7e]+$/.test(f.key) ? Buffer.from(f.key) : undefined;
    return (m: RawMsg): boolean => {
      const h = m.headers;
      if (f.stream && h?.get(D.stream) !== f.stream) return false;
      if (f.consumer && h?.get(D.consumer) !== f.consumer) return false;
      const subject = h?.get(D.subject) ?? '';
      if (f.subject && !subjectMatches(f.subject, subject)) return false;
      if (f.reason && h?.get(D.reason) !== f.reason) return false;
      if (f.key) {
        if (!contracts || (plainKey && Buffer.from(m.data.buffer, m.data.byteOffset, m.data.byteLength).indexOf(plainKey) < 0)) return false;
        let data: unknown;
        try { data = JSON.parse(new TextDecoder().decode(m.data)); } catch { return false; }
        if (!contracts.keysOf(subject, data).includes(f.key)) return false;
      }
      return true;
    };
  };

  /**
   * Read the DLQ messages on `filter` from `fromSeq` in sequence order, up to `toSeq`,
   * until `each` returns false. An ephemeral in-memory consumer without acks streams
   * them in batches: one round trip per SCAN_BATCH messages, not one per message.
   */
  const scan = async (filter: string, fromSeq: number, toSeq: number, each: (m: RawMsg) => boolean, batch = SCAN_BATCH): Promise<void> => {
    const ci = await call(jsm.consumers.add(DLQ_STREAM, {
      filter_subject: filter, deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: fromSeq,
      ack_policy: AckPolicy.None, mem_storage: true, num_replicas: 1, inactive_threshold: nanos(30_000),
    }), 'create scan consumer');
    try {
      if (!ci.num_pending) return;
      const consumer = await call(js.consumers.get(DLQ_STREAM, ci.name), 'scan consumer');
      let pending = ci.num_pending;
      for (let idle = 0; ; ) {
        const msgs = await call(consumer.fetch({ max_messages: Math.max(1, Math.min(batch, pending)), expires: SCAN_EXPIRES_MS }), 'fetch');
        // nats-server 2.9.10 may retire an expired pull without telling (see pull.ts).
        const stopper = setTimeout(() => msgs.stop(), SCAN_EXPIRES_MS + 200);
        let got = 0;
        try {
          for await (const m of msgs) {
            got++;
            pending = m.info.pending;
            if (m.seq > toSeq || !each({ seq: m.seq, data: m.data, headers: m.headers }) || pending === 0) { msgs.stop(); return; }
          }
        } catch (err) {
          throw new DlqUnavailableError(`scan: ${String(err)}`, { cause: err });
        } finally {
          clearTimeout(stopper);
        }
        if (got) { idle = 0; continue; }
        // Nothing came: the rest was deleted meanwhile, or NATS went away (then this throws).
        if (!(pending = (await call(consumer.info(), 'scan consumer info')).num_pending)) return;
        if (++idle >= 2) throw new DlqUnavailableError(`scan: ${pending} messages pending but none delivered`);
      }
    } finally {
      void jsm.consumers.delete(DLQ_STREAM, ci.name).catch(() => {});
    }
  };

  const get = async (id: string): Promise<DlqEntry | null> => {
    const seq = seqOf(id);
    if (seq === null) return null;
    await reachable();
    const m = await readMsg(seq);
    return m ? toEntry(stored(m)) : null;
  };

  /** A page of entries in DLQ order, with the count of all that match. `await dlq.page({ key: orderId, limit: 50 })` */
  const page = async (q: DlqPageQuery = {}): Promise<DlqPage> => {
    const limit = Math.min(Math.max(q.limit ?? 100, 1), 1000);
    const after = q.cursor ? decodeCursor(q.cursor) : 0;
    await reachable();
    const filter = subjectFilter(q);
    const items: DlqEntry[] = [];
    let more = false;
    if (!needsContent(q)) {
      // The subject alone decides: the server counts per subject, and the page is read
      // from the cursor on, limit + 1 messages at most.
      const info = await call(jsm.streams.info(DLQ_STREAM, { subjects_filter: filter }), 'stream info');
      const total = Object.values(info.state.subjects ?? {}).reduce((a, b) => a + b, 0);
      await scan(filter, after + 1, Infinity, (m) => {
        if (items.length === limit) { more = true; return false; }
        items.push(toEntry(m));
        return true;
      }, limit + 1);
      return { items, total, nextCursor: more ? encodeCursor(Number(items.at(-1)!.id)) : null };
    }
    // Headers or payload decide: the whole filtered subject is read once per page.
    const match = matches(q);
    let total = 0;
    await scan(filter, 1, Infinity, (m) => {
      if (!match(m)) return true;
      total++;
      if (m.seq > after) {
        if (items.length < limit) items.push(toEntry(m));
        else more = true;
      }
      return true;
    });
    return { items, total, nextCursor: more ? encodeCursor(Number(items.at(-1)!.id)) : null };
  };

  /** The first page's entries. `await dlq.list({ stream: 'ORDERS' })` */
  const list = async (f: DlqPageQuery = {}): Promise<DlqEntry[]> => (await page(f)).items;

  const remove = async (id: string): Promise<boolean> => {
    const seq = seqOf(id);
    if (seq === null) return false;
    await reachable();
    // The server answering with an error means there is no such message.
    return await call(jsm.streams.deleteMessage(DLQ_STREAM, seq, false).catch((err) => {
      if (err instanceof JetStreamApiError) return false;
      throw err;
    }), 'delete message');
  };

  const redriveMsg = async (m: StoredMsg, replaceData?: unknown): Promise<DlqEntry> => {
    const e = toEntry(stored(m));
    const h = natsHeaders();
    for (const [k, v] of Object.entries(e.headers)) h.set(k, v);
    // The original Nats-Msg-Id is still inside the duplicate window of its stream: a
    // fresh one lets the copy in; Orderflow-Msg-Id keeps the inbox identity.
    if (!h.has(H.logicalId)) h.set(H.logicalId, `${e.stream}:${e.seq}`);
    const data = replaceData === undefined ? m.data : new TextEncoder().encode(JSON.stringify(replaceData));
    await call(js.publish(e.subject, data, { headers: h, msgID: `redrive:${DLQ_STREAM}:${m.seq}` }), 'publish');
    await call(jsm.streams.deleteMessage(DLQ_STREAM, m.seq, false).catch((err) => {
      if (err instanceof JetStreamApiError) return false;
      throw err;
    }), 'delete message');
    return e;
  };

  /**
   * Publish the entry back to its original subject, then delete it. A replacement payload
   * must fit the subject's schema (400 VALIDATION_FAILED otherwise; the entry stays).
   */
  const redrive = async (id: string, replaceData?: unknown): Promise<DlqEntry | null> => {
    const seq = seqOf(id);
    if (seq === null) return null;
    await reachable();
    const m = await readMsg(seq);
    if (!m) return null;
    if (replaceData !== undefined) {
      const subject = m.header?.get(D.subject) ?? '';
      const parsed = contracts?.schemaFor(subject)?.safeParse(replaceData);
      if (parsed && !parsed.success) {
        const details = parsed.error.issues.map((i) => ({ field: ['data', ...i.path].join('.'), message: i.message }));
        throw new HttpError(400, 'VALIDATION_FAILED', `data does not fit the schema of ${subject}: ${details.map((d) => d.field).join(', ')}`, details);
      }
    }
    return await redriveMsg(m, replaceData);
  };

  /**
   * Redrive every entry that matches when the call starts, each once: one that fails
   * again meanwhile is a new entry, past the snapshot. `await dlq.redriveMany({ key }, { dryRun: true })`
   */
  const redriveMany = async (f: DlqFilter, opts: { dryRun?: boolean } = {}): Promise<{ matched: number; redriven: number }> => {
    await reachable();
    const last = (await call(jsm.streams.info(DLQ_STREAM), 'stream info')).state.last_seq;
    const match = matches(f);
    const seqs: number[] = [];
    if (last > 0) await scan(subjectFilter(f), 1, last, (m) => { if (match(m)) seqs.push(m.seq); return true; });
    if (opts.dryRun) return { matched: seqs.length, redriven: 0 };
    let redriven = 0;
    for (const seq of seqs) {
      // Deleted (or redriven by someone else) since the snapshot: nothing to do.
      const m = await readMsg(seq);
      if (m) { await redriveMsg(m); redriven++; }
    }
    return { matched: seqs.length, redriven };
  };

  const depth = async (): Promise<number> => (await jsm.streams.info(DLQ_STREAM)).state.messages;

  return { get, page, list, remove, redrive, redriveMany, depth };
}

type Advisory = { stream: string; consumer: string; stream_seq: number; deliveries: number };

/**
 * Move messages whose deliveries ran out into the DLQ. Runs where the admin target runs (kit/modules.ts); the
 * advisory stream is a work queue, so with several admin replicas each advisory is handled by one mover.
 * `const mover = await startDlqMover({ js, jsm, errors, log })`
 */
export async function startDlqMover({ js, jsm, errors, log, onMoved }: {
  js: JetStreamClient; jsm: JetStreamManager; errors: KV; log: Logger; onMoved?: (a: Advisory) => void;
}): Promise<{ stop(): Promise<void> }> {
  const consumer = await js.consumers.get(ADVISORY_STREAM, DLQ_MOVER);
  const stopping = new AbortController();
  // Advisories are handled one at a time as they arrive, so there is always room for more.
  const loop = pullLoop({
    consumer, log, signal: stopping.signal, what: 'DLQ mover fetch',
    room: () => 64, waitForRoom: async () => {},
    onMessage: async (m) => {
      try {
        const a = m.json<Advisory>();
        const original = await jsm.streams.getMessage(a.stream, { seq: a.stream_seq }).catch(() => null);
        if (original) {
          const last = await errors.get(errorKey(a.stream, a.stream_seq)).catch(() => null);
          const error = redactSecrets(last?.value?.length ? last.string() : 'max deliveries exceeded', original.data);
          await sendToDlq(js, {
            stream: a.stream, consumer: a.consumer, subject: original.subject, seq: a.stream_seq,
            deliveries: a.deliveries, reason: 'max-deliveries', error, data: original.data, headers: original.header,
          });
          await jsm.streams.deleteMessage(a.stream, a.stream_seq, false).catch(() => false);
          await errors.delete(errorKey(a.stream, a.stream_seq)).catch(() => {});
          log.warn({ stream: a.stream, consumer: a.consumer, seq: a.stream_seq, error }, 'moved to DLQ after max deliveries');
          onMoved?.(a);
        }
        m.ack();
      } catch (err) {
        log.warn({ err: String(err) }, 'DLQ mover failed on an advisory; retrying');
        m.nak(1000);
      }
    },
  });
  return { async stop() { stopping.abort(); await loop; } };
}

