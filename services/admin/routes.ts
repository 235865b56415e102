// DLQ administration over HTTP (CONTRACTS.md "DLQ administration").
import { Hono } from 'hono';
import { z } from 'zod';
import type { DlqAdmin, DlqEntry } from '../kit/index.ts';
import { notFound } from '../kit/index.ts';
import { readJson, validate, type AppEnv } from '../kit/index.ts';

const view = ({ headers: _h, seq: _s, ...e }: DlqEntry) => ({ ...e, originalSeq: _s });
const name = z.string().regex(/^[A-Za-z0-9_-]{1,64}$/).optional();
const Filter = z.object({
  stream: name, consumer: name,
  subject: z.string().regex(/^[A-Za-z0-9_.*>$-]{1,256}$/).optional(),
  reason: z.string().max(64).optional(),
  key: z.string().min(1).max(256).optional(),
});

export function dlqRoutes({ dlq }: { dlq: DlqAdmin }) {
  return new Hono<AppEnv>()
    .get('/', async (c) => {
      const q = validate(c.req.query(), Filter.extend({
        limit: z.coerce.number().int().min(1).max(1000).optional(),
        cursor: z.string().min(1).max(200).optional(),
      }));
      const page = await dlq.page(q);
      return c.json({ items: page.items.map(view), nextCursor: page.nextCursor, total: page.total });
    })
    .post('/redrive', async (c) => {
      const { dryRun, ...f } = await readJson(c, Filter.extend({ dryRun: z.boolean().optional() }).strict());
      return c.json(await dlq.redriveMany(f, { dryRun }));
    })
    .get('/:id', async (c) => {
      const e = await dlq.get(c.req.param('id'));
      if (!e) throw notFound(`DLQ entry ${c.req.param('id')}`);
      return c.json(view(e));
    })
    .delete('/:id', async (c) => {
      if (!(await dlq.remove(c.req.param('id')))) throw notFound(`DLQ entry ${c.req.param('id')}`);
      return c.body(null, 204);
    })
    .post('/:id/redrive', async (c) => {
      const hasBody = (await c.req.text()).length > 0;
      const body = hasBody ? await readJson(c, z.object({ data: z.unknown().optional() })) : {};
      const e = await dlq.redrive(c.req.param('id'), body.data);
      if (!e) throw notFound(`DLQ entry ${c.req.param('id')}`);
      return c.json({ redriven: 1, id: e.id, subject: e.subject });
    });
}
