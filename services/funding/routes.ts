// /api/funding/applications. The POST only validates and stores (with its events, in
// one statement) and answers 202: scoring never runs in the request. Status reads
// come from the KV status cache and fall back to Postgres on a miss. SSE and the
// WebSocket follow status changes through the status hub (status-hub.ts).
//
// Reads and the replica (DATABASE_READ_URL, Deps.readOrm): GET of an application, the
// status fallback and the live feeds' reads go to the replica. Read-your-writes: a row
// the replica does not have (yet) is read again on the primary, so a client GETting
// the application it has just POSTed finds it whatever the replay lag. A status change
// of an existing row is only as fresh on the replica as its replay lag (milliseconds on
// a healthy streaming standby; pg_stat_replication.replay_lag on the primary says how
// much): the writes a client makes here answer with the primary's view (the decision
// POST returns the whole application), so a client never needs a GET to see them.
// Routing reads of young rows to the primary was the alternative; it costs a primary
// read for every fresh application's GETs and polls, the traffic the replica is for.
// A replica that errors (down, not yet migrated) is skipped for the primary too.
import type { Context } from 'hono';
import { streamSSE } from 'hono/streaming';
import { CreateApplicationRequest, isFinalStatus, ReviewDecisionRequest, type ApplicationStatus } from '../../contracts/funding.ts';
import { ApplicationAccepted, ApplicationStatusView, ApplicationView } from '../../contracts/http.ts';
import type { ApiEnv, Deps, Logger, MikroORM, Principal, Routes } from '../kit/index.ts';
import { acceptWebSocket, hasAccess, HttpError, notFound, ownerFilter } from '../kit/index.ts';
import { createApplicationWriter, disbursementRequest, loadWorkRow, StaleApplicationError, toApplicationView, transition } from './applications.ts';
import { Application, Payout } from './entities.ts';
import { StatusCacheUnavailableError, type CachedStatus, type StatusCache } from './status-cache.ts';
import { followStatus, type StatusHub } from './status-hub.ts';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

type StatusRow = { id: string; status: ApplicationStatus; updated_at: Date; version: number };
const toStatus = (r: StatusRow): CachedStatus => ({ id: r.id, status: r.status, updatedAt: new Date(r.updated_at).toISOString(), version: Number(r.version) });

/** The authoritative status, from Postgres. */
async function statusFromDb(orm: MikroORM, id: string): Promise<CachedStatus | null> {
  const [r] = await orm.em.fork().execute<StatusRow[]>('select id, status, updated_at, version from funding.applications where id = ?', [id]);
  return r ? toStatus(r) : null;
}

/** The statuses of many applications in one statement (the status hub's poll); ids without a row are left out. */
export async function statusesFromDb(orm: MikroORM, ids: string[]): Promise<CachedStatus[]> {
  if (!ids.length) return [];
  const rows = await orm.em.fork().execute<StatusRow[]>(
    `select id, status, updated_at, version from funding.applications where id in (${ids.map(() => '?').join(', ')})`, ids);
  return rows.map(toStatus);
}

/** Reads for the API: the replica first, the primary for what it lacks (see the top of this file). */
export type Reads = {
  status(id: string): Promise<CachedStatus | null>;
  statuses(ids: string[]): Promise<CachedStatus[]>;
  view(id: string): Promise<OwnedView | null>;
  /** Who applied (null for applications from before access control); null when there is no such application. */
  owner(id: string): Promise<{ owner: string | null } | null>;
};

type OwnedView = { view: ReturnType<typeof toApplicationView>; owner: string | null };

/** `const reads = createReads(deps.orm, deps.readOrm, log)`; with no replica (`readOrm === orm`) everything reads the primary once. */
export function createReads(orm: MikroORM, readOrm: MikroORM, log: Logger, opts: { replicaRetryMs?: number } = {}): Reads {
  // After a replica failure, reads skip it for a while: an unreachable host costs each
  // read the pool's connect timeout (3 s), not only the first.
  let skipReplicaUntil = 0;
  const replicaFirst = async <T>(what: string, fn: (o: MikroORM) => Promise<T | null>): Promise<T | null> => {
    if (readOrm === orm) return await fn(orm);
    if (Date.now() >= skipReplicaUntil) {
      try {
        const got = await fn(readOrm);
        if (got) return got;
      } catch (err) {
        if (Date.now() >= skipReplicaUntil) log.warn({ err: String(err), what }, 'replica read failed; reading the primary for a while');
        skipReplicaUntil = Date.now() + (opts.replicaRetryMs ?? 5000);
      }
    }
    return await fn(orm);
  };
  return {
    status: (id) => replicaFirst('status', (o) => statusFromDb(o, id)),
    // A poll: rows the replica lacks are simply not news yet; only a failing replica sends it to the primary.
    statuses: async (ids) => (await replicaFirst('statuses', (o) => statusesFromDb(o, ids))) ?? [],
    view: (id) => replicaFirst('application', (o) => view(o, id)),
    owner: (id) => replicaFirst('owner', async (o) => {
      const [r] = await o.em.fork().execute<{ owner: string | null }[]>('select owner from funding.applications where id = ?', [id]);
      return r ? { owner: r.owner } : null;
    }),
  };
}

const idParam = (c: Context<ApiEnv>) => {
  const id = c.req.param('id') ?? '';
  // A malformed id cannot name an application: 404 rather than a uuid cast error.
  if (!UUID.test(id)) throw notFound(`application ${id}`);
  return id.toLowerCase();
};

async function view(orm: MikroORM, id: string): Promise<OwnedView | null> {
  const em = orm.em.fork();
  const app = await em.findOne(Application, { id });
  if (!app) return null;
  const payout = await em.findOne(Payout, { applicationId: id });
  return { view: toApplicationView(app, payout), owner: app.owner ?? null };
}

/** What SSE and the WebSocket send for a status: the contract's status body. */
const statusBody = (s: CachedStatus) => JSON.stringify({ id: s.id, status: s.status, updatedAt: s.updatedAt });

/** Customers apply and read their own; reviewers decide and, like admins and funding read clients, read all. */
const WRITE = { roles: ['customer', 'reviewer', 'admin'], scopes: ['funding:write', 'admin'] } as const;
const READ = { roles: ['customer', 'reviewer', 'admin'], scopes: ['funding:read', 'funding:write', 'funding:decide', 'admin'] } as const;
const DECIDE = { roles: ['reviewer', 'admin'], scopes: ['funding:decide', 'admin'] } as const;
/** Who reads every application; anyone else reads those it applied with, and another's is a 404 (CONTRACTS.md). */
const SEES_ALL = { roles: ['reviewer', 'admin'], scopes: ['funding:read', 'funding:decide', 'admin'] } as const;

/** `applicationRoutes(deps.routes, { orm, reads, cache, hub, wakeOutbox })` */
export function applicationRoutes(routes: Routes, { orm, reads, cache, hub, wakeOutbox }: { orm: MikroORM; reads: Reads; cache: StatusCache; hub: StatusHub; wakeOutbox: Deps['wakeOutbox'] }) {
  const writer = createApplicationWriter(orm, wakeOutbox);
  const tags = ['funding'];
  /** 404 unless the principal may see application `id` (every one, or its own); the cheap check first. */
  const mustSee = async (principal: Principal | undefined, id: string) => {
    const owner = ownerFilter(principal!, SEES_ALL);
    if (owner === undefined) return;
    if ((await reads.owner(id))?.owner !== owner) throw notFound(`application ${id}`);
  };
  const id = { id: { description: 'the application uuid' } };

  routes.add({
    method: 'POST', path: '/api/funding/applications', tags, summary: 'Apply for funding (answered at once; scoring runs later)', access: WRITE,
    idempotency: {}, body: CreateApplicationRequest,
    responses: { 202: { description: 'accepted', schema: ApplicationAccepted } },
    handler: async (c, { body: req, principal }) => {
      if (req.priority === 'high' && !hasAccess(principal!, DECIDE)) {
        throw new HttpError(403, 'FORBIDDEN', 'priority "high" needs the reviewer or admin role or the funding:decide scope');
      }
      const { id } = await writer.create(req, c.get('requestId'), principal!.sub);
      c.get('log').info({ applicationId: id, businessId: req.businessId }, 'funding application accepted');
      return c.json({ id, status: 'processing' }, 202);
    },
  });

  routes.add({
    method: 'GET', path: '/api/funding/applications/{id}', tags, summary: 'Read an application', access: READ, params: id,
    responses: { 200: { description: 'the application with its risk score, decision, model version and disbursement', schema: ApplicationView } },
    errors: [404],
    handler: async (c, { principal }) => {
      const id = idParam(c);
      const v = await reads.view(id);
      const owner = ownerFilter(principal!, SEES_ALL);
      if (!v || (owner !== undefined && v.owner !== owner)) throw notFound(`application ${id}`);
      return c.json(v.view);
    },
  });

  routes.add({
    method: 'GET', path: '/api/funding/applications/{id}/status', tags, summary: "An application's status, from the status cache", access: READ,
    params: id, tokenInQuery: true,
    responses: { 200: { description: 'the status', schema: ApplicationStatusView, headers: { 'X-Status-Source': 'kv or db' } } },
    errors: [404],
    handler: async (c, { principal }) => {
      const id = idParam(c);
      await mustSee(principal, id);
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
        s = await reads.status(id);
      }
      if (!s) throw notFound(`application ${id}`);
      c.header('X-Status-Source', source);
      return c.json({ id, status: s.status, updatedAt: s.updatedAt });
    },
  });

  routes.add({
    method: 'GET', path: '/api/funding/applications/{id}/events', tags, summary: 'Follow status changes (Server-Sent Events; ends at a final status)', access: READ,
    params: id, tokenInQuery: true,
    responses: { 200: { description: 'text/event-stream of `status` events {id,status,updatedAt}', type: 'event-stream' } },
    errors: [404],
    handler: async (c, { principal }) => {
      const id = idParam(c);
      await mustSee(principal, id);
      const first = await reads.status(id);
      if (!first) throw notFound(`application ${id}`);
      return streamSSE(c, async (stream) => {
        let done = false;
        let finish!: () => void;
        const finished = new Promise<void>((resolve) => { finish = resolve; });
        const end = () => { done = true; finish(); };
        // Writes are chained so events leave in order and never interleave with a ping.
        let chain: Promise<void> = Promise.resolve();
        const write = (fn: () => Promise<void>) => { chain = chain.then(fn).catch(end); };
        stream.onAbort(end);
        // Changes come from the hub (one NATS subscription and, while NATS is down, one
        // Postgres poll for the whole process), in version order.
        const stop = followStatus({
          hub, id, first, read: reads.status,
          send: (s) => write(async () => {
            if (done) return;
            await stream.writeSSE({ event: 'status', id: String(s.version), data: statusBody(s) });
            if (isFinalStatus(s.status)) end();
          }),
        });
        const ping = setInterval(() => write(() => stream.write(': ping\n\n').then(() => {})), 15_000);
        try {
          await finished;
          await chain;
        } finally {
          clearInterval(ping);
          stop();
        }
      });
    },
  });

  // The same feed over a WebSocket: the current status at once, each change, and a
  // close with 1000 after the final one. A malformed id is 400 here (refused before
  // the upgrade, where a status line is all a browser's WebSocket reports), unknown 404.
  routes.add({
    method: 'GET', path: '/api/funding/applications/{id}/ws', tags, summary: 'Follow status changes over a WebSocket (closed at a final status)', access: READ,
    params: id, tokenInQuery: true,
    responses: { 101: { description: 'switching to WebSocket: text frames of {id,status,updatedAt}', type: 'websocket' } },
    errors: [404, 426],
    handler: async (c, { principal }) => {
      const raw = c.req.param('id') ?? '';
      if (!UUID.test(raw)) throw new HttpError(400, 'VALIDATION_FAILED', 'application id must be a UUID', [{ field: 'id', message: 'must be a UUID' }]);
      const id = raw.toLowerCase();
      await mustSee(principal, id);
      const first = await reads.status(id);
      if (!first) throw notFound(`application ${id}`);
      // The feed starts only once the socket is open: a handshake that never completes holds nothing.
      return await acceptWebSocket(c, (socket) => followStatus({
        hub, id, first, read: reads.status,
        send: (s) => {
          socket.send(statusBody(s));
          if (isFinalStatus(s.status)) socket.close(1000, 'final status');
        },
      }));
    },
  });

  routes.add({
    method: 'POST', path: '/api/funding/applications/{id}/decision', tags, summary: 'Decide an application in pending_review', access: DECIDE,
    params: id,
    // Scoped per application: one key may not replay another application's decision.
    idempotency: { scope: (c) => `POST /api/funding/applications/${idParam(c)}/decision` },
    body: ReviewDecisionRequest,
    responses: { 200: { description: 'the application after the decision', schema: ApplicationView } },
    errors: [404, 409],
    handler: async (c, { body }) => {
      const id = idParam(c);
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
      return c.json((await view(orm, id))!.view);
    },
  });
}
