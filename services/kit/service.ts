// What main.ts hands every service, and what a service hands back.
import type { KV, Kvm } from '@nats-io/kv';
import type { MiddlewareHandler } from 'hono';
import type { BaseConfig } from './config.ts';
import type { MikroORM } from './db.ts';
import type { Flags } from './flags.ts';
import type { App, Routes } from './http.ts';
import type { Logger } from './log.ts';
import type { Metrics } from './metrics.ts';
import type { Nats } from './nats.ts';
import type { CommittedOutboxRow, RelayHook } from './outbox.ts';
import type { Tracing } from './tracing.ts';

export type Env = Record<string, string | undefined>;

export type { RelayHook };

export type Deps = {
  config: BaseConfig;
  /** The raw environment, for the service's own prefixed settings (its config.ts). */
  env: Env;
  nats: Nats;
  kvm: Kvm;
  /** Feature flags: `flags.client` evaluates from memory, `flags.store` is what the admin API writes through. */
  flags: Flags;
  /** Last handler errors, read by the DLQ mover (see dlq.ts). */
  errors: KV;
  orm: MikroORM;
  /**
   * For reads that tolerate replication lag: a pool on DATABASE_READ_URL, or `orm` itself when
   * that is unset. Never write through it; a read that must see the caller's own write reads `orm`.
   */
  readOrm: MikroORM;
  log: Logger;
  metrics: Metrics;
  /** Spans and trace propagation (tracing.ts): hand it to clients and consumers; `tracing.on` is false unless an OTLP endpoint is set. */
  tracing: Tracing;
  app: App;
  /** Declare /api routes here (kit/http/route.ts): auth, rate limit and the OpenAPI entry come from the declaration. */
  routes: Routes;
  /**
   * Call after committing outbox rows outside `em.transactional` (transactions wake relays by
   * themselves). Given the committed rows (as the inserting statement returned them), the
   * relay publishes those at once, one statement, rather than draining the table for them.
   */
  wakeOutbox: (committed?: CommittedOutboxRow[]) => void;
  /**
   * Run `hook` with the outbox rows of `subject` this process's relay publishes, while they
   * are published and before their deletion commits: a hook that throws puts them back
   * (they are published again, as duplicates the stream drops, and the hook runs again).
   * Only for subjects the module declares in needs.relayHooks; call it in start(). When two
   * targets of one process hook one subject, the first registration serves.
   */
  onRelay: (subject: string, hook: RelayHook) => void;
  /** Endpoints of simulators main.ts started for unset external URLs. */
  endpoints: Record<string, string>;
  /**
   * The cluster-wide rate limits (kit/http/rate-limit.ts): per principal, or per client address
   * without one. Goes right after the auth middleware of a route. `app.get('/x', auth, deps.limit, h)`
   */
  limit: MiddlewareHandler;
};

export type Running = { stop(): Promise<void> };
