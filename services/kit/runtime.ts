// The process runtime: boots the kit (HTTP, NATS, provisioning, Postgres, migrations,
// outbox relay, DLQ mover), starts the chosen services, and stops them all in reverse.
// Of the kit it boots what the chosen targets declare they need (modules.ts): their
// schemas only, the relay and the mover only where a target wants them.
// main.ts gives it the registry; tests call it in-process with their own env.
import { randomBytes } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { hostname } from 'node:os';
import { serve, type ServerType } from '@hono/node-server';
import { Kvm } from '@nats-io/kv';
import { loadBaseConfig } from './config.ts';
import { migrate, openOrm, type MikroORM } from './db.ts';
import { createDlqAdmin, ERRORS_BUCKET, startDlqMover } from './dlq.ts';
import { ConfigError } from './errors.ts';
import { FLAGS_BUCKET, startFlags } from './flags.ts';
import { answerMalformedRequests, createApp, createRoutes, createRouteTable, errorBody, notFoundOrNotAllowed, type App, type Routes } from './http.ts';
import { createLimitShare, createRateLimiter, RATE_LIMIT_MEMBERS_BUCKET, type LimitShare } from './http/rate-limit.ts';
import { probeHandlers } from './http/app.ts';
import { openApiDocument, type OpenApiOptions } from './http/openapi.ts';
import { z } from 'zod';
import type { MiddlewareHandler } from 'hono';
import type { Verifier } from './auth.ts';
import { createLogger, type Logger } from './log.ts';
import { registerCollectors } from './collectors.ts';
import { createMetrics } from './metrics.ts';
import { kitEntities, kitMigrations } from './migrations.ts';
import { planModules, type ExternalSystem, type ModulePlan, type ServiceModule } from './modules.ts';
import { connectNats, type Nats } from './nats.ts';
import { startOutboxRelay, wroteOutbox, type CommittedOutboxRow, type OutboxRelay } from './outbox.ts';
import { assertProductionReady } from './production.ts';
import { createProfiler, profileAnswers, startContinuousProfiling } from './profiling.ts';
import { provision, readSpecs, STREAMS_DIR } from './provision.ts';
import { checkInboxRetention, inboxHorizon, RETENTION_TABLES, startPruner, type Pruner } from './retention.ts';
import type { Deps, Env, RelayHook, Running } from './service.ts';
import { createTracing } from './tracing.ts';
import { createWebSockets } from './websocket.ts';
import type { SpanExporter } from '@opentelemetry/sdk-trace-base';

export type { ServiceModule } from './modules.ts';
/** Target name -> module; its order is the start order. */
export type Registry = Record<string, ServiceModule>;

/** Stand-ins for the external systems the targets need (`needed`, from the module map) whose URL is unset; endpoints go to Deps. */
export type Externals = (ctx: { env: Env; needed: ExternalSystem[]; app: App; log: Logger }) => Promise<{ endpoints: Record<string, string>; stop(): Promise<void> }>;

/** How the process verifies access tokens (main.ts: identity's keys from the database, or IDENTITY_URL's JWKS). */
export type VerifierFactory = (ctx: { env: Env; orm: MikroORM; plan: ModulePlan; log: Logger }) => Verifier;

export type Cluster = { url: string; port: number; app: App; deps: Deps; targets: string[]; plan: ModulePlan; stop(): Promise<void> };

/** Resolve TARGET into service names. `resolveTargets('orders,notifications', registry)` */
export function resolveTargets(target: string, registry: Registry): string[] {
  const names = Object.keys(registry);
  if (target.trim() === 'all') return names.filter((n) => !registry[n]!.standalone);
  const wanted = target.split(',').map((s) => s.trim()).filter(Boolean);
  const unknown = wanted.filter((t) => !names.includes(t));
  if (unknown.length || !wanted.length) throw new ConfigError(`unknown TARGET ${unknown.join(',') || '(empty)'}; known: all, ${names.join(', ')}`);
  return names.filter((n) => wanted.includes(n));
}

const withTimeout = async <T>(p: Promise<T>, ms: number, what: string): Promise<T> =>
  await Promise.race([p, new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`${what} timed out`)), ms).unref())]);

/** Boot a process. `const cluster = await startRuntime({ env: process.env, registry })` */
export async function startRuntime(opts: {
  env: Env; registry: Registry; externals?: Externals; log?: Logger;
  /** Routes every process serves, whatever its targets (the API description pages), declared in its route table before the services'. */
  routes?: (routes: Routes) => void;
  /** Turns tracing on with this exporter (tests: an InMemorySpanExporter). */
  spanExporter?: SpanExporter;
  /** Without one, no route that needs a token can be declared (start-up fails naming it). */
  verifier?: VerifierFactory;
  /** Title, version and the clients' scopes of GET /openapi.json. */
  openapi?: OpenApiOptions;
}): Promise<Cluster> {
  const config = loadBaseConfig(opts.env);
  const log = opts.log ?? createLogger({ level: config.LOG_LEVEL });
  const targets = resolveTargets(config.TARGET, opts.registry);
  const plan = planModules(targets, opts.registry);
  const production = config.ORDERFLOW_ENV === 'production';
  if (production) assertProductionReady(opts.env, plan);
  const metrics = createMetrics();
  // Before connecting to anything: a retention that could let a redelivery run twice is a configuration error.
  checkInboxRetention(config.INBOX_RETENTION_HOURS * 3_600_000, inboxHorizon(readSpecs(STREAMS_DIR)), log);
  // Off unless an OTLP endpoint is set (or a test hands in an exporter): see tracing.ts.
  const tracing = createTracing({
    env: opts.env, exporter: opts.spanExporter, instance: instanceId(opts.env),
    service: `orderflow-${config.TARGET.trim() === 'all' ? 'all' : targets.join(',')}`,
  });
  let nats: Nats | undefined;
  let orm: MikroORM | undefined;
  let provisioned = false;
  let servicesStarted = false;
  let limitShare: LimitShare | undefined;

  // The probes are declared in the route table below (so /openapi.json lists them); the boot app mounts its own.
  const app = createApp({
    log, metrics, corsOrigins: config.CORS_ORIGINS, tracing, probes: false,
    admission: { maxInflight: config.HTTP_MAX_INFLIGHT, queueMax: config.HTTP_QUEUE_MAX, queueTimeoutMs: config.HTTP_QUEUE_TIMEOUT_MS, shedLoopLagMs: config.HTTP_SHED_LOOP_LAG_MS },
    readiness: async () => {
      const missing: string[] = [];
      if (!provisioned) missing.push('provisioning');
      else if (!servicesStarted) missing.push('services');
      else if (limitShare && !(limitShare.fraction() > 0)) missing.push('rate limits');
      await withTimeout(nats?.nc.flush() ?? Promise.reject(new Error()), 1000, 'nats').catch(() => missing.push('nats'));
      await withTimeout(orm?.em.fork().execute('select 1') ?? Promise.reject(new Error()), 1000, 'database').catch(() => missing.push('database'));
      return missing;
    },
  });

  // Listen first: /healthz answers and /readyz says what is missing while we boot.
  // Hono freezes its router on the first request, so until every service has mounted
  // its routes, requests go to a small boot app (health, readiness, 503 for the rest).
  const bootApp = createApp({ log, metrics, readiness: app.readiness, corsOrigins: config.CORS_ORIGINS });
  bootApp.all('*', (c) => c.json(errorBody('UNAVAILABLE', 'starting up'), 503));
  let handler = bootApp.fetch;
  // Upgrades go through the same handler: while booting the boot app refuses them with 503.
  const sockets = createWebSockets();
  const server: ServerType = await new Promise((resolve) => {
    const s = serve({
      fetch: (req, env) => handler(req, env), port: config.PORT, hostname: opts.env.HOST ?? '0.0.0.0',
      websocket: { server: sockets.server }, serverOptions: { shouldUpgradeCallback: sockets.shouldUpgrade },
    }, () => resolve(s));
  });
  answerMalformedRequests(server);
  const port = (server.address() as AddressInfo).port;
  log.info({ port, targets, schemas: plan.schemas, outboxRelay: plan.outboxRelay, dlqMover: plan.dlqMover, externals: plan.externals }, 'http listening');

  nats = await connectNats(config.NATS_URL, log, `orderflow:${targets.join(',')}`);
  await provision(nats.jsm, STREAMS_DIR, log, undefined, { replicas: config.NATS_STREAM_REPLICAS || undefined });
  const kvm = new Kvm(nats.js);
  const errors = await kvm.open(ERRORS_BUCKET);
  // Every module's flags, not only the chosen targets': the admin API lists them in any topology.
  const flags = await startFlags({ kv: await kvm.open(FLAGS_BUCKET), log, seeds: Object.values(opts.registry).flatMap((m) => m.flags ?? []) });

  // This replica's share of the cluster-wide rate limits (kit/http/rate-limit.ts). Started now:
  // a newcomer's share settles over a couple of heartbeats, while the rest boots.
  const limitConfig = {
    rps: config.RATE_LIMIT_RPS, burst: config.RATE_LIMIT_BURST, anonRps: config.RATE_LIMIT_ANON_RPS,
    anonBurst: config.RATE_LIMIT_ANON_BURST || 2 * config.RATE_LIMIT_ANON_RPS, trustedProxies: config.RATE_LIMIT_TRUSTED_PROXIES,
  };
  if (limitConfig.rps > 0 || limitConfig.anonRps > 0) {
    limitShare = createLimitShare({
      kv: await kvm.open(RATE_LIMIT_MEMBERS_BUCKET), memberId: memberIdOf(opts.env),
      heartbeatMs: config.RATE_LIMIT_HEARTBEAT_MS, log: log.child({ component: 'rate-limit' }),
    });
    await limitShare.start();
  }
  const limit = createRateLimiter({ share: limitShare ?? { fraction: () => 1 }, metrics }, limitConfig);

  orm = await openOrm({
    url: config.DATABASE_URL!, poolMax: config.DB_POOL_MAX,
    entities: [...kitEntities, ...plan.entities] as never,
    migrations: [...kitMigrations, ...plan.migrations], tracing,
  });
  await migrate(orm, log);
  // Opened lazily by the pool: a replica not yet reachable fails only the reads that use it.
  const readOrm: MikroORM = config.DATABASE_READ_URL
    ? await openOrm({ url: config.DATABASE_READ_URL, poolMax: config.DB_POOL_MAX, entities: [...kitEntities, ...plan.entities] as never, migrations: [], replica: true, tracing })
    : orm;
  registerCollectors({ metrics, jsm: nats.jsm, orm, streamsDir: STREAMS_DIR, schemas: plan.schemas, log });
  provisioned = true;

  // Production never starts a stand-in (and so never mounts a /_dev route): the URLs were checked above.
  const ext = opts.externals && !production ? await opts.externals({ env: opts.env, needed: plan.externals, app, log }) : { endpoints: {}, stop: async () => {} };
  let relay: OutboxRelay | undefined;
  const wakeOutbox = (committed?: CommittedOutboxRow[]) => relay?.wake(committed);
  orm.em.getEventManager().registerSubscriber({ afterTransactionCommit: (args) => { if (wroteOutbox(args.transaction)) wakeOutbox(); } });
  const routes = createRoutes({ app, table: createRouteTable(), orm, verifier: opts.verifier?.({ env: opts.env, orm, plan, log }), limit });
  opts.routes?.(routes);
  const probes = probeHandlers(app.readiness, metrics);
  const tags = ['operations'];
  routes.add({ method: 'GET', path: '/healthz', tags, summary: 'Liveness: 200 while the process lives', access: 'public', responses: { 200: { description: 'alive', schema: z.object({ status: z.literal('ok') }) } }, handler: probes.healthz });
  routes.add({
    method: 'GET', path: '/readyz', tags, summary: 'Readiness: 200 once NATS, the database and provisioning answer', access: 'public',
    responses: { 200: { description: 'ready', schema: z.object({ status: z.literal('ready') }) }, 503: { description: 'not ready, with what is missing', schema: z.object({ status: z.literal('unavailable'), missing: z.array(z.string()) }) } },
    handler: probes.readyz,
  });
  routes.add({ method: 'GET', path: '/metrics', tags, summary: 'Prometheus metrics (text exposition format)', access: 'public', responses: { 200: { description: 'the metrics', type: 'text' } }, handler: probes.metrics });
  // This process's CPU and heap profiles (kit/profiling.ts), Go's /debug/pprof names: admins only,
  // since a profile shows code paths and heap contents. One profiler per process, shared with
  // continuous profiling below.
  const profiler = createProfiler();
  const pprof = profileAnswers(profiler);
  const admins = { roles: ['admin'], scopes: ['admin'] };
  const pprofAnswer = { 200: { description: 'a gzipped pprof profile (go tool pprof, Pyroscope, Grafana read it)', type: 'binary' as const } };
  routes.add({
    method: 'GET', path: '/debug/pprof/profile', tags, summary: "This process's CPU profile over `seconds` (1-60, default 10), in pprof format", access: admins,
    query: z.object({ seconds: z.coerce.number().int().min(1).max(60).default(10) }), responses: pprofAnswer, errors: [409],
    handler: (c, { query }) => pprof.cpu(query.seconds, c.req.raw.signal),
  });
  routes.add({ method: 'GET', path: '/debug/pprof/heap', tags, summary: "This process's sampled heap, in pprof format", access: admins, responses: pprofAnswer, handler: () => pprof.heap() });
  const relayHooks = new Map<string, RelayHook>();
  const onRelay = (subject: string, hook: RelayHook) => {
    if (!plan.relayHooks.includes(subject)) throw new Error(`onRelay(${subject}): no target of this process declares it in needs.relayHooks`);
    // Targets of one process that hook one subject hook it for the same work (funding and
    // funding-scoring both write the status cache): the first registration serves.
    if (!relayHooks.has(subject)) relayHooks.set(subject, hook);
  };
  const deps: Deps = { config, env: opts.env, nats, kvm, flags, errors, orm, readOrm, log, metrics, tracing, app, routes, endpoints: ext.endpoints, wakeOutbox, onRelay, limit };

  const running: { name: string; svc: Running }[] = [];
  for (const name of targets) {
    running.push({ name, svc: await opts.registry[name]!.start({ ...deps, log: log.child({ service: name }) }) });
    log.info({ service: name }, 'service started');
  }

  // Without a share the limiter can only answer 503: serve once it holds one (seconds at most).
  if (limitShare && !(await limitShare.ready(15_000))) log.warn('no share of the rate limits yet; limited routes answer 503 until one settles');
  // The document of every route this process declared, built once at the first request.
  let openapi: string | undefined;
  routes.add({
    method: 'GET', path: '/openapi.json', tags, summary: 'This OpenAPI 3.1 document', access: 'public',
    responses: { 200: { description: 'the document of every route of this process, with its security and error bodies', schema: z.object({ openapi: z.string() }).loose() } },
    handler: (c) => c.body(openapi ??= JSON.stringify(openApiDocument(routes.table, opts.openapi)), 200, { 'content-type': 'application/json' }),
  });
  // A known path with a method it does not serve: 405 with Allow (CONTRACTS.md), from the table.
  app.notFound(notFoundOrNotAllowed(routes.table));
  handler = app.fetch;
  servicesStarted = true;
  // A declared hook never registered would let this relay publish rows without their hook.
  const unhooked = plan.relayHooks.filter((s) => !relayHooks.has(s));
  if (unhooked.length) throw new Error(`the targets declare relay hooks for ${unhooked.join(', ')} but none was registered (deps.onRelay in start())`);
  if (plan.outboxRelay) {
    relay = startOutboxRelay({ orm, js: nats.js, log, tracing, onPublished: (n) => metrics.outboxPublished.inc(n), hooks: relayHooks, skipSubjects: plan.relayElsewhere });
  }
  const mover = plan.dlqMover ? await startDlqMover({ js: nats.js, jsm: nats.jsm, errors, log }) : undefined;
  // Every process prunes the kit's tables, whatever its targets: they come with every process, and
  // replicas share the work through SKIP LOCKED (retention.ts). RETENTION_INTERVAL_S=0 turns it off here.
  const pruner: Pruner | undefined = config.RETENTION_INTERVAL_S > 0
    ? startPruner({
      orm, log: log.child({ component: 'retention' }), intervalMs: config.RETENTION_INTERVAL_S * 1000,
      inboxMs: config.INBOX_RETENTION_HOURS * 3_600_000, idempotencyMs: config.IDEMPOTENCY_KEY_RETENTION_HOURS * 3_600_000,
      onPruned: (table, n) => metrics.retentionPruned.inc({ table }, n),
    })
    : undefined;
  // Both series exist from the start, so a dashboard or rule sees 0 rather than no data.
  if (pruner) for (const table of RETENTION_TABLES) metrics.retentionPruned.inc({ table }, 0);
  const dlq = createDlqAdmin(nats);
  const gauges = setInterval(() => {
    void dlq.depth().then((d) => metrics.dlqDepth.set(d)).catch(() => {});
    void orm!.em.fork().execute<{ n: string; lag: number | null }[]>('select count(*) as n, extract(epoch from now() - min(created_at))::float8 as lag from kit.outbox')
      .then(([r]) => { metrics.outboxPending.set(Number(r?.n ?? 0)); metrics.outboxLagSeconds.set(r?.lag ?? 0); }).catch(() => {});
  }, 5000);
  gauges.unref();
  const profiling = config.PYROSCOPE_URL
    ? startContinuousProfiling({
      profiler, url: config.PYROSCOPE_URL, periodS: config.PYROSCOPE_PERIOD_S, log,
      appName: `orderflow.${targets.length === Object.keys(opts.registry).length ? 'all' : targets.join('+')}`,
      labels: { instance: instanceId(opts.env) },
    })
    : undefined;
  log.info({ targets }, 'orderflow ready');

  let stopping: Promise<void> | undefined;
  const stop = async () => {
    stopping ??= (async () => {
      clearInterval(gauges);
      await profiling?.stop();
      await profiler.close();
      // Consumers first: in-flight work finishes (or returns to the queue), nothing new is pulled;
      // what has not finished by the deadline is redelivered after ack_wait. The services share
      // nothing but NATS and Postgres, which close after them, so they stop side by side: one by
      // one, each consumer's wait for its pull to end (up to 3 s with NATS unreachable) added up.
      await Promise.all(running.map(async ({ name, svc }) => {
        const t = performance.now();
        await withTimeout(svc.stop(), config.SHUTDOWN_TIMEOUT_MS, `stopping ${name}`).catch((err) => log.warn({ err: String(err) }, 'service stop'));
        log.debug({ service: name, ms: Math.round(performance.now() - t) }, 'stop: service stopped');
      }));
      log.debug('stop: services stopped; closing http');
      await sockets.closeAll();
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        if ('closeIdleConnections' in server) server.closeIdleConnections();
        setTimeout(() => { if ('closeAllConnections' in server) server.closeAllConnections(); resolve(); }, 2000).unref();
      });
      log.debug('stop: http closed; stopping DLQ mover and relay');
      if (mover) await withTimeout(mover.stop(), 5000, 'dlq mover stop').catch(() => {});
      if (pruner) await withTimeout(pruner.stop(), 5000, 'retention pruner stop').catch(() => {});
      // A last pass so events of work that just finished leave now rather than at next boot.
      if (relay) {
        await relay.drainOnce().catch(() => 0);
        await relay.stop();
      }
      log.debug('stop: relay stopped');
      await flags.stop().catch((err) => log.warn({ err: String(err) }, 'flags stop'));
      // Hands this replica's share of the rate limits to the others at once (else it ages out).
      await limitShare?.stop().catch((err) => log.warn({ err: String(err) }, 'rate limit share stop'));
      await ext.stop();
      // With NATS unreachable a drain never completes: bound it, then close.
      await withTimeout(nats!.nc.drain(), 5000, 'nats drain').catch(() => nats!.nc.close().catch(() => {}));
      log.debug('stop: nats closed; closing the ORM');
      // pg's pool.end() waits for every checked-out client; one stranded by a dropped connection must not hold the exit.
      await withTimeout(orm!.close(), 5000, 'orm close').catch((err) => log.warn({ err: String(err) }, 'orm close'));
      if (readOrm !== orm) await withTimeout(readOrm.close(), 5000, 'read orm close').catch((err) => log.warn({ err: String(err) }, 'read orm close'));
      // Last: the spans of the shutdown itself go out too.
      await withTimeout(tracing.shutdown(), 5000, 'tracing shutdown').catch((err) => log.warn({ err: String(err) }, 'tracing shutdown'));
      log.info('stopped');
    })();
    return await stopping;
  };

  return { url: `http://127.0.0.1:${port}`, port, app, deps, targets, plan, stop };
}

/** Default instance id for logs and cluster membership. */
export const instanceId = (env: Env) => env.INSTANCE_ID ?? `${hostname()}-${process.pid}`;

/** A KV-token member id, unique per process even for in-process test clusters that share a pid. */
const memberIdOf = (env: Env) => `${instanceId(env)}-${randomBytes(3).toString('hex')}`.replace(/[^A-Za-z0-9_-]/g, '_');
