// /api/funding/applications. The POST only validates and stores (with its events, in
// one statement) and answers 202: scoring never runs in the request. Status reads
// come from the KV status cache and fall back to Postgres on a miss.
import type { Context } from 'hono';
import { Hono } from 'hono';
import { streamSSE } from 'hono/streaming';
import { CreateApplicationRequest, isFinalStatus, ReviewDecisionRequest, type ApplicationStatus } from '../../contracts/funding.ts';
import type { MikroORM } from '../kit/index.ts';
import { HttpError, notFound } from '../kit/index.ts';
import { idempotency, readJson, type AppEnv } from '../kit/index.ts';
import { createApplicationWriter, disbursementRequest, loadWorkRow, StaleApplicationError, toApplicationView, transition } from './applications.ts';
import { Application, Payout } from './entities.ts';
import { parseEntry, StatusCacheUnavailableError, type CachedStatus, type StatusCache } from './status-cache.ts';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** The authoritative status, from Postgres. */
async function statusFromDb(orm: MikroORM, id: string): Promise<CachedStatus | null> {
  const [r] = await orm.em.fork().execute<{ status: ApplicationStatus; updated_at: Date; version: number }[]>(
    'select status, updated_at, version from funding.applications where id = ?', [id]);
  return r ? { id, status: r.status, updatedAt: new Date(r.updated_at).toISOString(), version: Number(r.version) } : null;
}

const idParam = (c: Context<AppEnv>) => {
  const id = c.req.param('id') ?? '';
  // A malformed id cannot name an application: 404 rather than a uuid cast error.
  if (!UUID.test(id)) throw notFound(`application ${id}`);
  return id.toLowerCase();
};

async function view(orm: MikroORM, id: string) {
  const em = orm.em.fork();
  const app = await em.findOne(Application, { id });
  if (!app) return null;
  const payout = await em.findOne(Payout, { applicationId: id });
  return toApplicationView(app, payout);
}

/** `app.route('/api/funding/applications', applicationRoutes({ orm, cache, ssePollMs: 2000, wakeOutbox }))` */
export function applicationRoutes({ orm, cache, ssePollMs, wakeOutbox }: { orm: MikroORM; cache: StatusCache; ssePollMs: number; wakeOutbox: () => void }) {
  const writer = createApplicationWriter(orm, wakeOutbox);
  return new Hono<AppEnv>()
    .post('/', idempotency(orm, 'POST /api/funding/applications'), async (c) => {
      const req = await readJson(c, CreateApplicationRequest);
      const { id } = await writer.create(req, c.get('requestId'));
      c.get('log').info({ applicationId: id, businessId: req.businessId }, 'funding application accepted');
      return c.json({ id, status: 'processing' }, 202);
    })

    .get('/:id', async (c) => {
      const id = idParam(c);
      const v = await view(orm, id);
      if (!v) throw notFound(`application ${id}`);
      return c.json(v);
    })

    .get('/:id/status', async (c) => {
      const id = idParam(c);
      let s: CachedStatus | null = null;
      let source = 'kv';
      try {
        s = await cache.get(id);
      } catch (err) {
        // An outage would log once per request; the connection's own state changes are logged by the kit.
        if (err instanceof StatusCacheUnavailableError) c.get('log').debug({ err: err.message }, 'status cache unavailable; reading Postgres');
        else c.get('log').warn({ err: String(err) }, 'status cache read failed; reading Postgres');
      }
      if (!s) {
        source = 'db';
        s = await statusFromDb(orm, id);
      }
      if (!s) throw notFound(`application ${id}`);
      c.header('X-Status-Source', source);
      return c.json({ id, status: s.status, updatedAt: s.updatedAt });
    })

    .get('/:id/events', async (c) => {
      const id = idParam(c);
      const first = await statusFromDb(orm, id);
      if (!first) throw notFound(`application ${id}`);
      const log = c.get('log');
      return streamSSE(c, async (stream) => {
        let lastVersion = 0;
        let done = false;
        let finish!: () => void;
        const finished = new Promise<void>((resolve) => { finish = resolve; });
        const end = () => { done = true; finish(); };
        // Writes are chained so events leave in order and never interleave with a ping.
        let chain: Promise<void> = Promise.resolve();
        const write = (fn: () => Promise<void>) => { chain = chain.then(fn).catch(end); };
        const offer = (s: CachedStatus) => write(async () => {
          if (done || s.version <= lastVersion) return;
          lastVersion = s.version;
          await stream.writeSSE({ event: 'status', id: String(s.version), data: JSON.stringify({ id, status: s.status, updatedAt: s.updatedAt }) });
          if (isFinalStatus(s.status)) end();
        });
        stream.onAbort(end);
        offer(first);

        // Changes arrive through the KV watch; the poll covers a lagging or stopped status
        // consumer, and NATS being down. The poll starts first and the watch is not awaited:
        // with NATS unreachable, setting up the watch waits out the request timeout.
        const poll = setInterval(() => { void statusFromDb(orm, id).then((s) => { if (s) offer(s); }, () => {}); }, ssePollMs);
        const ping = setInterval(() => write(() => stream.write(': ping\n\n').then(() => {})), 15_000);
        let stopWatch = () => {};
        if (cache.connected()) {
          void cache.kv.watch({ key: id }).then(async (w) => {
            if (done) { w.stop(); return; }
            stopWatch = () => w.stop();
            for await (const e of w) { const s = parseEntry(e); if (s) offer(s); }
          }).catch((err) => { if (!done) log.warn({ err: String(err) }, 'status watch failed; polling only'); });
        }
        try {
          await finished;
          await chain;
        } finally {
          clearInterval(poll);
          clearInterval(ping);
          stopWatch();
        }
      });
    })

    .post('/:id/decision',
      // Scoped per application: one key may not replay another application's decision.
      async (c, next) => await idempotency(orm, `POST /api/funding/applications/${idParam(c)}/decision`)(c, next),
      async (c) => {
        const id = idParam(c);
        const body = await readJson(c, ReviewDecisionRequest);
        const app = await loadWorkRow(orm.em.fork(), id);
        if (!app) throw notFound(`application ${id}`);
        if (app.status !== 'pending_review') {
          throw new HttpError(409, 'NOT_PENDING_REVIEW', `application ${id} is ${app.status}; only a pending_review application takes a decision`);
        }
        const review = { decision: body.decision, reviewer: body.reviewer, note: body.note ?? null, at: new Date().toISOString() };
        try {
          await orm.em.fork().transactional((em) => transition(em, {
            id, from: 'pending_review', to: body.decision, version: app.version, requestId: c.get('requestId'),
            set: { review }, reason: `reviewed by ${body.reviewer}`, metadata: { reviewer: body.reviewer },
            events: body.decision === 'approved' ? [disbursementRequest(app, 'reviewed')] : [],
          }));
        } catch (err) {
          if (err instanceof StaleApplicationError) throw new HttpError(409, 'NOT_PENDING_REVIEW', `application ${id} changed while deciding; read it again`);
          throw err;
        }
        c.get('log').info({ applicationId: id, decision: body.decision, reviewer: body.reviewer }, 'review decision recorded');
        return c.json(await view(orm, id));
      });
}
