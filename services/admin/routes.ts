// DLQ administration over HTTP (CONTRACTS.md "DLQ administration").
import { z } from 'zod';
import { DlqBulkRedriven, DlqEntryView, DlqPageView, DlqRedriven } from '../../contracts/http.ts';
import type { DlqAdmin, DlqEntry, Routes } from '../kit/index.ts';
import { notFound } from '../kit/index.ts';

/** The DLQ and the flags are admin territory: the admin role or a client with the admin scope. */
export const ADMIN = { roles: ['admin'], scopes: ['admin'] } as const;

const view = ({ headers: _h, seq: _s, ...e }: DlqEntry) => ({ ...e, originalSeq: _s });
const name = z.string().regex(/^[A-Za-z0-9_-]{1,64}$/).optional();
const Filter = z.object({
  stream: name, consumer: name,
  subject: z.string().regex(/^[A-Za-z0-9_.*>$-]{1,256}$/).optional(),
  reason: z.string().max(64).optional(),
  key: z.string().min(1).max(256).optional(),
});

export function dlqRoutes(routes: Routes, { dlq }: { dlq: DlqAdmin }) {
  const tags = ['dlq'];
  const id = { id: { description: 'the entry id (its sequence in the DLQ stream)' } };
  routes.add({
    method: 'GET', path: '/api/admin/dlq', tags, summary: 'List DLQ entries', access: ADMIN,
    query: Filter.extend({
      limit: z.coerce.number().int().min(1).max(1000).optional(),
      cursor: z.string().min(1).max(200).optional(),
    }),
    responses: { 200: { description: 'a page of entries', schema: DlqPageView } },
    handler: async (c, { query }) => {
      const page = await dlq.page(query);
      return c.json({ items: page.items.map(view), nextCursor: page.nextCursor, total: page.total });
    },
  });
  routes.add({
    method: 'POST', path: '/api/admin/dlq/redrive', tags, summary: 'Redrive the entries that match (bulk)', access: ADMIN,
    body: Filter.extend({ dryRun: z.boolean().optional() }).strict(),
    responses: { 200: { description: 'how many matched and were redriven', schema: DlqBulkRedriven } },
    handler: async (c, { body: { dryRun, ...f } }) => c.json(await dlq.redriveMany(f, { dryRun })),
  });
  routes.add({
    method: 'GET', path: '/api/admin/dlq/{id}', tags, summary: 'Read a DLQ entry', access: ADMIN, params: id,
    responses: { 200: { description: 'the entry', schema: DlqEntryView } },
    errors: [404],
    handler: async (c) => {
      const e = await dlq.get(c.req.param('id')!);
      if (!e) throw notFound(`DLQ entry ${c.req.param('id')}`);
      return c.json(view(e));
    },
  });
  routes.add({
    method: 'DELETE', path: '/api/admin/dlq/{id}', tags, summary: 'Delete a DLQ entry', access: ADMIN, params: id,
    responses: { 204: { description: 'deleted', type: 'empty' } },
    errors: [404],
    handler: async (c) => {
      if (!(await dlq.remove(c.req.param('id')!))) throw notFound(`DLQ entry ${c.req.param('id')}`);
      return c.body(null, 204);
    },
  });
  routes.add({
    method: 'POST', path: '/api/admin/dlq/{id}/redrive', tags, summary: 'Redrive one entry, optionally with a replacement payload', access: ADMIN, params: id,
    body: { schema: z.object({ data: z.unknown().optional() }), optional: true },
    responses: { 200: { description: 'redriven', schema: DlqRedriven } },
    errors: [404],
    handler: async (c, { body }) => {
      const e = await dlq.redrive(c.req.param('id')!, body?.data);
      if (!e) throw notFound(`DLQ entry ${c.req.param('id')}`);
      return c.json({ redriven: 1, id: e.id, subject: e.subject });
    },
  });
}
