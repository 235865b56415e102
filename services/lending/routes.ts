// HTTP: create an investor order, read it, follow it as Server-Sent Events.
import { streamSSE } from 'hono/streaming';
import { LendingOrderAcceptedBody, LendingOrderView } from '../../contracts/http.ts';
import { CreateLendingOrderRequest, FINAL_STATUSES, type LendingOrderAccepted } from '../../contracts/lending.ts';
import type { MikroORM, Routes } from '../kit/index.ts';
import { HttpError, notFound, ownerFilter, type ErrorDetail } from '../kit/index.ts';
import { createLendingOrder, orderView, progressOf, readOrder } from './ledger.ts';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
// 50,000 bad amounts would make a 5 MB error body; the first ones say enough.
const MAX_DETAILS = 100;

/** Validate an order: the schema, then unique loan ids. Throws the contract's 400. */
export function parseOrderRequest(raw: unknown): CreateLendingOrderRequest {
  const parsed = CreateLendingOrderRequest.safeParse(raw);
  const details: ErrorDetail[] = [];
  if (!parsed.success) {
    for (const i of parsed.error.issues.slice(0, MAX_DETAILS)) details.push({ field: i.path.length ? i.path.join('.') : '(body)', message: i.message });
  } else {
    const seen = new Map<string, number>();
    parsed.data.items.forEach((item, i) => {
      const first = seen.get(item.loanId);
      if (first === undefined) seen.set(item.loanId, i);
      else if (details.length < MAX_DETAILS) details.push({ field: `items.${i}.loanId`, message: `repeats items.${first}.loanId (${item.loanId}); loan ids must be unique within an order` });
    });
  }
  if (!details.length && parsed.success) return parsed.data;
  const total = parsed.success ? details.length : parsed.error.issues.length;
  throw new HttpError(400, 'VALIDATION_FAILED', `invalid request: ${[...new Set(details.map((d) => d.field))].slice(0, 5).join(', ')}${total > 5 ? ` and ${total - 5} more` : ''}`, details);
}

/** Investors place and read their own orders; admins and lending clients any. */
const WRITE = { roles: ['investor', 'admin'], scopes: ['lending:write', 'admin'] } as const;
const READ = { roles: ['investor', 'admin'], scopes: ['lending:read', 'lending:write', 'admin'] } as const;
/**
 * Who may name any investorId and read every order; an investor's orders carry its own id as
 * investorId (naming another is a 403), and another investor's order is a 404 (CONTRACTS.md).
 */
const ANY_INVESTOR = { roles: ['admin'], scopes: ['lending:read', 'lending:write', 'admin'] } as const;

export function lendingRoutes(routes: Routes, { orm, batchSize, pollMs = 250 }: { orm: MikroORM; batchSize: number; pollMs?: number }) {
  const findOrder = async (id: string) => (UUID.test(id) ? await readOrder(orm.em.fork(), id) : null);
  const tags = ['lending'];
  const id = { id: { description: 'the lending order uuid' } };

  routes.add({
    method: 'POST', path: '/api/lending/orders', tags, summary: 'Place an investor order of up to 50,000 loans', access: WRITE,
    idempotency: {},
    body: { schema: CreateLendingOrderRequest, parse: parseOrderRequest },
    responses: { 202: { description: 'accepted; batches are reserved then invested in T24', schema: LendingOrderAcceptedBody } },
    errors: [403],
    handler: async (c, { body: req, principal }) => {
      const own = ownerFilter(principal!, ANY_INVESTOR);
      if (own !== undefined && req.investorId !== own) throw new HttpError(403, 'FORBIDDEN', 'an investor places orders under its own id: investorId must be your user id');
      const o = await createLendingOrder(orm, req, { batchSize, requestId: c.get('requestId') });
      c.get('log').info({ id: o.id, investorId: req.investorId, totalItems: o.totalItems, batches: o.batches }, 'lending order accepted');
      const body: LendingOrderAccepted = { id: o.id, status: o.status, totalItems: o.totalItems, batches: o.batches };
      return c.json(body, 202);
    },
  });
  routes.add({
    method: 'GET', path: '/api/lending/orders/{id}', tags, summary: 'Read a lending order', access: READ, params: id,
    responses: { 200: { description: 'the order with its counts and failed items', schema: LendingOrderView } },
    errors: [404],
    handler: async (c, { principal }) => {
      const id = c.req.param('id')!;
      const own = ownerFilter(principal!, ANY_INVESTOR);
      const view = UUID.test(id) ? await orderView(orm.em.fork(), id) : null;
      if (!view || (own !== undefined && view.investorId !== own)) throw notFound(`lending order ${id}`);
      return c.json(view);
    },
  });
  routes.add({
    method: 'GET', path: '/api/lending/orders/{id}/events', tags, summary: "Follow an order's counts (Server-Sent Events; ends at a final status)", access: READ,
    params: id, tokenInQuery: true,
    responses: { 200: { description: 'text/event-stream of {id,status,totalItems,counts,completedAt}', type: 'event-stream' } },
    errors: [404],
    handler: async (c, { principal }) => {
      const id = c.req.param('id')!;
      const own = ownerFilter(principal!, ANY_INVESTOR);
      const found = await findOrder(id);
      if (!found || (own !== undefined && found.investor_id !== own)) throw notFound(`lending order ${id}`);
      return streamSSE(c, async (stream) => {
        let aborted = false;
        stream.onAbort(() => { aborted = true; });
        let last = '';
        let seq = 0;
        let quietSince = Date.now();
        while (!aborted) {
          const o = await findOrder(id);
          if (!o) break;
          const data = JSON.stringify(progressOf(o));
          if (data !== last) {
            await stream.writeSSE({ data, id: String(++seq) });
            last = data;
            quietSince = Date.now();
          } else if (Date.now() - quietSince > 15_000) {
            // A comment line keeps idle proxies from cutting a long order's stream.
            await stream.write(': keep-alive\n\n');
            quietSince = Date.now();
          }
          if (FINAL_STATUSES.includes(o.status)) break;
          await stream.sleep(pollMs);
        }
      });
    },
  });
}
