// The order's status follows the saga: saga.step.* and saga.done.* events carry the
// saga's view (status, history, totals, tracking number, failure reason) and its
// version; an event older than what the row holds changes nothing.
//
// This is a projection, not an effect: applying an event twice or out of order is
// harmless by the version check, so it needs no inbox row. It therefore bypasses
// the worker harness and applies events in micro-batches (up to 256, or whatever
// arrived within a few ms) with one UPDATE each, then acks them: one statement
// where the harness would spend a transaction per event, on the busiest consumer
// of the saga (three events per order).
import { setTimeout as sleep } from 'node:timers/promises';
import type { JsMsg } from '@nats-io/jetstream';
import { SAGA_STREAM, SagaStatusEvent } from '../../contracts/commerce.ts';
import { sendToDlq } from '../kit/dlq.ts';
import { pullLoop } from '../kit/pull.ts';
import { parseMessage } from '../kit/worker.ts';
import type { Deps } from '../kit/service.ts';

export type Projection = { stop(): Promise<void> };

/** `const p = await startStatusProjection(deps); ...; await p.stop()` */
export async function startStatusProjection(deps: Deps, o: { batch?: number; lingerMs?: number } = {}): Promise<Projection> {
  const batch = o.batch ?? 256;
  const lingerMs = o.lingerMs ?? 5;
  const log = deps.log.child({ consumer: 'orders' });
  const consumer = await deps.nats.js.consumers.get(SAGA_STREAM, 'orders');
  let buffer: JsMsg[] = [];
  let timer: NodeJS.Timeout | undefined;
  let chain: Promise<void> = Promise.resolve();
  let running = true;
  let writing = 0;

  const apply = async (msgs: JsMsg[]) => {
    const latest = new Map<string, SagaStatusEvent>();
    const good: JsMsg[] = [];
    for (const m of msgs) {
      const parsed = parseMessage(m, SagaStatusEvent);
      if (!parsed.ok) {
        await sendToDlq(deps.nats.js, { stream: SAGA_STREAM, consumer: 'orders', subject: m.subject, seq: m.seq, deliveries: m.info.deliveryCount, reason: 'invalid-message', error: parsed.error, data: m.data, headers: m.headers })
          .then(() => m.term(), () => m.nak(1000));
        continue;
      }
      good.push(m);
      const e = parsed.data;
      const prev = latest.get(e.id);
      if (!prev || prev.version < e.version) latest.set(e.id, e);
    }
    if (!latest.size) return;
    // Rows in id order, so two batches could never lock in opposite orders.
    const events = [...latest.values()].sort((a, b) => (a.id < b.id ? -1 : 1));
    try {
      await deps.orm.em.fork().execute(
        `update orders.orders o set status = v.status, history = v.history, total_cents = v.total, currency = v.currency,
           tracking_number = v.tracking, failure_reason = v.reason, saga_version = v.version, updated_at = v.at
         from (values ${events.map(() => '(?::uuid, ?::text, ?::jsonb, ?::bigint, ?::text, ?::text, ?::text, ?::int, ?::timestamptz)').join(', ')})
           as v(id, status, history, total, currency, tracking, reason, version, at)
         where o.id = v.id and o.saga_version < v.version`,
        events.flatMap((e) => [e.id, e.status, JSON.stringify(e.history), e.totalCents, e.currency, e.trackingNumber, e.failureReason, e.version, e.at]));
      for (const m of good) m.ack();
      deps.metrics.handlerOutcomes.inc({ consumer: 'orders', outcome: 'ok' }, good.length);
    } catch (err) {
      log.warn({ err: String(err), events: good.length }, 'status projection failed; will retry');
      for (const m of good) m.nak(1000);
      deps.metrics.handlerOutcomes.inc({ consumer: 'orders', outcome: 'retry' }, good.length);
    }
  };

  const flush = () => {
    if (timer) { clearTimeout(timer); timer = undefined; }
    if (!buffer.length) return;
    const msgs = buffer;
    buffer = [];
    writing += msgs.length;
    chain = chain.then(() => apply(msgs)).finally(() => { writing -= msgs.length; }).catch((err) => log.error({ err: String(err) }, 'status projection crashed on a batch'));
  };

  // Pull at most one batch beyond the one being written, so under overload events wait
  // in the stream rather than in this process.
  const loop = pullLoop({
    consumer, log, running: () => running, what: 'status projection fetch',
    room: () => batch * 2 - buffer.length - writing,
    waitForRoom: () => Promise.race([chain, sleep(50)]),
    onMessage: (m) => {
      buffer.push(m);
      if (buffer.length >= batch) flush();
      else timer ??= setTimeout(flush, lingerMs);
    },
  });

  return {
    async stop() {
      running = false;
      await loop;
      flush();
      await chain;
    },
  };
}
