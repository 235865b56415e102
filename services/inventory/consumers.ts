// The inventory actor's mailbox: reserve, release and deduct commands from the saga,
// each answered (reserve and release) by a reply committed with the change.
import { z } from 'zod';
import { InitItem, INVENTORY_INIT_SUBJECT, INVENTORY_STREAM, Subjects, type SagaReply } from '../../contracts/commerce.ts';
import { NonRetryableError } from '../kit/errors.ts';
import { enqueue } from '../kit/outbox.ts';
import type { Deps } from '../kit/service.ts';
import { startWorker, type Worker } from '../kit/worker.ts';
import { deduct, initItem, release, reserve } from './inventory.ts';

const Command = z.object({ orderUuid: z.uuid(), items: z.array(z.object({ sku: z.string(), quantity: z.number().int().min(1) })).optional() });

export async function startInventoryWorker(deps: Deps, opts: { concurrency: number; retryBaseMs: number }): Promise<Worker> {
  return await startWorker({
    stream: INVENTORY_STREAM, consumer: 'inventory',
    js: deps.nats.js, orm: deps.orm, errors: deps.errors, log: deps.log, metrics: deps.metrics,
    schema: Command, key: (m) => m.orderUuid, concurrency: opts.concurrency,
    retry: { baseMs: opts.retryBaseMs, maxMs: 30_000 },
    handle: async (cmd, ctx) => {
      const reply = (data: SagaReply) => ({ subject: replySubject(data.type), data, headers: ctx.requestId ? { 'X-Request-Id': ctx.requestId } : undefined });
      switch (ctx.subject) {
        case Subjects.reserve:
          if (!cmd.items?.length) throw new NonRetryableError('reserve without items');
          await ctx.tx(async (em) => {
            const r = await reserve(em, cmd.orderUuid, cmd.items!);
            await enqueue(em, [reply(r.ok ? { type: 'reserved', orderUuid: cmd.orderUuid, lines: r.lines } : { type: 'rejected', orderUuid: cmd.orderUuid, reason: r.reason, skus: r.skus })]);
            ctx.log.debug({ orderUuid: cmd.orderUuid, ok: r.ok }, 'reserve');
          });
          return;
        case Subjects.release:
          await ctx.tx(async (em) => {
            const r = await release(em, cmd.orderUuid);
            await enqueue(em, [reply({ type: 'released', orderUuid: cmd.orderUuid })]);
            ctx.log.debug({ orderUuid: cmd.orderUuid, r }, 'release');
          });
          return;
        case Subjects.deduct:
          await ctx.tx(async (em) => {
            const r = await deduct(em, cmd.orderUuid);
            if (r === 'not-reserved') ctx.log.warn({ orderUuid: cmd.orderUuid }, 'deduct for an order without a live reservation');
          });
          return;
        default:
          throw new NonRetryableError(`unknown inventory command ${ctx.subject}`);
      }
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
