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
import type { JetStreamClient, JetStreamManager, StoredMsg } from '@nats-io/jetstream';
import type { KV } from '@nats-io/kv';
import { headers as natsHeaders, type MsgHdrs } from '@nats-io/transport-node';
import type { Logger } from './log.ts';
import { H } from './nats.ts';
import { pullLoop } from './pull.ts';

export const DLQ_STREAM = 'DLQ';
export const ADVISORY_STREAM = 'ADVISORIES';
export const DLQ_MOVER = 'dlq-mover';
export const ERRORS_BUCKET = 'dlq-errors';

const D = {
  stream: 'Orderflow-Dlq-Stream',
  consumer: 'Orderflow-Dlq-Consumer',
  subject: 'Orderflow-Dlq-Subject',
  seq: 'Orderflow-Dlq-Seq',
  deliveries: 'Orderflow-Dlq-Deliveries',
  reason: 'Orderflow-Dlq-Reason',
  error: 'Orderflow-Dlq-Error',
  at: 'Orderflow-Dlq-At',
} as const;
const DLQ_HEADERS = new Set<string>([...Object.values(D), H.msgId].map((h) => h.toLowerCase()));

export type DlqReason = 'max-deliveries' | 'non-retryable' | 'invalid-message';

export type DlqEntry = {
  id: string; stream: string; consumer: string; subject: string; seq: number;
  deliveries: number; reason: string; error: string; at: string; data: unknown;
  headers: Record<string, string>;
};

export type DlqFilter = { stream?: string; consumer?: string; subject?: string; reason?: string; limit?: number };

/** Key of a message's last error in the dlq-errors bucket. */
export const errorKey = (stream: string, seq: number) => `${stream}.${seq}`;

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
  h.set(D.error, e.error.replace(/[\r\n]+/g, ' ').slice(0, 1000));
  h.set(D.at, new Date().toISOString());
  await js.publish(`dlq.${e.stream}.${e.consumer}`, e.data, { headers: h, msgID: `${e.stream}:${e.seq}` });
}

function toEntry(m: StoredMsg): DlqEntry {
  const get = (k: string) => m.header?.get(k) ?? '';
  const headers: Record<string, string> = {};
  if (m.header) for (const [k, vs] of m.header) if (!DLQ_HEADERS.has(k.toLowerCase())) headers[k] = vs[0] ?? '';
  let data: unknown;
  const text = new TextDecoder().decode(m.data);
  try { data = JSON.parse(text); } catch { data = text; }
  return {
    id: String(m.seq), stream: get(D.stream), consumer: get(D.consumer), subject: get(D.subject),
    seq: Number(get(D.seq)), deliveries: Number(get(D.deliveries)), reason: get(D.reason),
    error: get(D.error), at: get(D.at), data, headers,
  };
}

const token = (s: string | undefined) => (s && /^[A-Za-z0-9_-]+$/.test(s) ? s : '*');

export type DlqAdmin = ReturnType<typeof createDlqAdmin>;

/** List, show, redrive and delete DLQ entries. `const dlq = createDlqAdmin({ js, jsm })` */
export function createDlqAdmin({ js, jsm }: { js: JetStreamClient; jsm: JetStreamManager }) {
  // An id is the DLQ sequence as the list shows it: digits only, so `18.0`, `0x12` or
  // `+18` are not other names for entry 18.
  const seqOf = (id: string): number | null => (/^[1-9][0-9]*$/.test(id) && Number.isSafeInteger(Number(id)) ? Number(id) : null);

  const get = async (id: string): Promise<DlqEntry | null> => {
    const seq = seqOf(id);
    if (seq === null) return null;
    const m = await jsm.streams.getMessage(DLQ_STREAM, { seq }).catch(() => null);
    return m ? toEntry(m) : null;
  };

  const list = async (f: DlqFilter = {}): Promise<DlqEntry[]> => {
    const limit = Math.min(Math.max(f.limit ?? 100, 1), 1000);
    const filter = `dlq.${token(f.stream)}.${token(f.consumer)}`;
    const out: DlqEntry[] = [];
    let seq = 1;
    // Direct gets walk the stream by subject without creating a consumer.
    while (out.length < limit) {
      const m = await jsm.direct.getMessage(DLQ_STREAM, { seq, next_by_subj: filter }).catch(() => null);
      if (!m) break;
      const e = toEntry(m);
      seq = m.seq + 1;
      if (f.stream && e.stream !== f.stream) continue;
      if (f.consumer && e.consumer !== f.consumer) continue;
      if (f.subject && !subjectMatches(f.subject, e.subject)) continue;
      if (f.reason && e.reason !== f.reason) continue;
      out.push(e);
    }
    return out;
  };

  const remove = async (id: string): Promise<boolean> => {
    const seq = seqOf(id);
    if (seq === null) return false;
    return await jsm.streams.deleteMessage(DLQ_STREAM, seq, false).catch(() => false);
  };

  /** Publish the entry back to its original subject, then delete it. */
  const redrive = async (id: string, replaceData?: unknown): Promise<DlqEntry | null> => {
    const seq = seqOf(id);
    if (seq === null) return null;
    const m = await jsm.streams.getMessage(DLQ_STREAM, { seq }).catch(() => null);
    if (!m) return null;
    const e = toEntry(m);
    const h = natsHeaders();
    for (const [k, v] of Object.entries(e.headers)) h.set(k, v);
    // The original Nats-Msg-Id is still inside the duplicate window of its stream: a
    // fresh one lets the copy in; Orderflow-Msg-Id keeps the inbox identity.
    if (!h.has(H.logicalId)) h.set(H.logicalId, `${e.stream}:${e.seq}`);
    const data = replaceData === undefined ? m.data : new TextEncoder().encode(JSON.stringify(replaceData));
    await js.publish(e.subject, data, { headers: h, msgID: `redrive:${DLQ_STREAM}:${seq}` });
    await jsm.streams.deleteMessage(DLQ_STREAM, seq, false).catch(() => false);
    return e;
  };

  const redriveMany = async (f: Omit<DlqFilter, 'limit'>): Promise<number> => {
    let n = 0;
    for (;;) {
      const batch = await list({ ...f, limit: 500 });
      if (!batch.length) return n;
      for (const e of batch) if (await redrive(e.id)) n++;
    }
  };

  const depth = async (): Promise<number> => (await jsm.streams.info(DLQ_STREAM)).state.messages;

  return { get, list, remove, redrive, redriveMany, depth };
}

function subjectMatches(pattern: string, subject: string): boolean {
  const p = pattern.split('.');
  const s = subject.split('.');
  for (let i = 0; i < p.length; i++) {
    if (p[i] === '>') return s.length > i;
    if (p[i] !== '*' && p[i] !== s[i]) return false;
  }
  return p.length === s.length;
}

type Advisory = { stream: string; consumer: string; stream_seq: number; deliveries: number };

/**
 * Move messages whose deliveries ran out into the DLQ. Runs in every process; the
 * advisory stream is a work queue, so each advisory is handled by one mover.
 * `const mover = await startDlqMover({ js, jsm, errors, log })`
 */
export async function startDlqMover({ js, jsm, errors, log, onMoved }: {
  js: JetStreamClient; jsm: JetStreamManager; errors: KV; log: Logger; onMoved?: (a: Advisory) => void;
}): Promise<{ stop(): Promise<void> }> {
  const consumer = await js.consumers.get(ADVISORY_STREAM, DLQ_MOVER);
  let running = true;
  // Advisories are handled one at a time as they arrive, so there is always room for more.
  const loop = pullLoop({
    consumer, log, running: () => running, what: 'DLQ mover fetch',
    room: () => 64, waitForRoom: async () => {},
    onMessage: async (m) => {
      try {
        const a = m.json<Advisory>();
        const original = await jsm.streams.getMessage(a.stream, { seq: a.stream_seq }).catch(() => null);
        if (original) {
          const last = await errors.get(errorKey(a.stream, a.stream_seq)).catch(() => null);
          const error = last?.value?.length ? last.string() : 'max deliveries exceeded';
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
  return { async stop() { running = false; await loop; } };
}

