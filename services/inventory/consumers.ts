// The inventory actor's mailbox: reserve, release and deduct commands from the saga,
// each answered (reserve and release) by a reply committed with the change. Commands
// that arrive together share a transaction (kit/batch-worker.ts).
import { z } from 'zod';
import { InitItem, INVENTORY_INIT_SUBJECT, INVENTORY_STREAM, Subjects, type SagaReply } from '../../contracts/commerce.ts';
import { NonRetryableError } from '../kit/index.ts';
import { enqueue, type OutboxMessage } from '../kit/index.ts';
import type { Deps } from '../kit/index.ts';
import { startBatchWorker, type BatchWorker } from '../kit/index.ts';
import { applyStock, initItem, type ReserveResult, type StockCommand } from './inventory.ts';

const Command = z.object({ orderUuid: z.uuid(), items: z.array(z.object({ sku: z.string(), quantity: z.number().int().min(1) })).optional() });

export async function startInventoryWorker(deps: Deps, opts: { batch: number; retryBaseMs: number }): Promise<BatchWorker> {
  return await startBatchWorker({
    stream: INVENTORY_STREAM, consumer: 'inventory',
    js: deps.nats.js, orm: deps.orm, errors: deps.errors, log: deps.log, metrics: deps.metrics, tracing: deps.tracing,
    schema: Command, key: (m) => m.orderUuid, batch: opts.batch,
    retry: { baseMs: opts.retryBaseMs, maxMs: 30_000 },
    handle: async (items, em) => {
      const cmds: StockCommand[] = items.map(({ data: cmd, subject }) => {
        if (subject === Subjects.reserve) {
          if (!cmd.items?.length) throw new NonRetryableError('reserve without items');
          return { kind: 'reserve', orderId: cmd.orderUuid, items: cmd.items };
        }
        if (subject === Subjects.release) return { kind: 'release', orderId: cmd.orderUuid };
        if (subject === Subjects.deduct) return { kind: 'deduct', orderId: cmd.orderUuid };
        throw new NonRetryableError(`unknown inventory command ${subject}`);
      });
      const results = await applyStock(em, cmds);
      const out: OutboxMessage[] = [];
      for (const { data: cmd, subject, carry: headers, log } of items) {
        const r = results.get(cmd.orderUuid)!;
        const reply = (data: SagaReply) => out.push({ subject: replySubject(data.type), data, headers });
        if (subject === Subjects.reserve) {
          const rr = r as ReserveResult;
          reply(rr.ok ? { type: 'reserved', orderUuid: cmd.orderUuid, lines: rr.lines } : { type: 'rejected', orderUuid: cmd.orderUuid, reason: rr.reason, skus: rr.skus });
        } else if (subject === Subjects.release) {
          reply({ type: 'released', orderUuid: cmd.orderUuid });
        } else if (r === 'not-reserved') {
          log.warn({ orderUuid: cmd.orderUuid }, 'deduct for an order without a live reservation');
        }
      }
      await enqueue(em, out);
    },
  });
}

const replySubject = (type: SagaReply['type']) => ({
  reserved: Subjects.reserved, rejected: Subjects.rejected, released: Subjects.released,
} as Record<string, string>)[type]!;

/** Answer the catalog's "create this SKU's stock" requests (core NATS, queue group). */
export function serveInitRequests(deps: Deps): { stop(): void } {
  const sub = deps.nats.nc.subscribe(INVENTORY_INIT_SUBJECT, {
    queue: 'inventory',
    callback: (err, msg) => {
      if (err) return;
      void (async () => {
        try {
          const item = InitItem.parse(msg.json());
          const created = await deps.orm.em.fork().transactional((em) => initItem(em, item));
          msg.respond(JSON.stringify({ ok: true, created }));
        } catch (e) {
          deps.log.warn({ err: String(e) }, 'inventory init failed');
          msg.respond(JSON.stringify({ ok: false, error: (e as Error).message }));
        }
      })();
    },
  });
  return { stop: () => sub.unsubscribe() };
}
