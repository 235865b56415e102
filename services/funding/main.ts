// SME funding (seed 001): the applications API, the status cache and SSE, the router,
// disbursement through the payment gateway, and the reconciler. Risk scoring is its
// own target (`funding-scoring`, scoring-main.ts) so its CPU-heavy pods scale apart
// from the API; `npm start` (TARGET=all) runs both in one process.
import { Gauge } from 'prom-client';
import { FundingBuckets, FundingSubjects } from '../../contracts/funding.ts';
import { createGatewayClient } from '../kit/index.ts';
import { countedReads } from '../kit/index.ts';
import { defineModule } from '../kit/index.ts';
import type { Deps, Running } from '../kit/index.ts';
import { loadFundingConfig, requireGatewayUrl } from './config.ts';
import { startDisbursementConsumer, startFundingConsumers } from './consumers.ts';
import { startReconciler } from './reconcile.ts';
import { riskModelFlag } from './risk-flag.ts';
import { applicationRoutes, createReads } from './routes.ts';
import { createStatusCache, statusRelayHook, trackConnection } from './status-cache.ts';
import { createStatusHub } from './status-hub.ts';
import { entities, migrations } from './entities.ts';

export { entities, migrations };

export async function start(deps: Deps): Promise<Running> {
  const config = loadFundingConfig(deps.env, deps.endpoints.gateway);
  const { log } = deps;
  const gateway = createGatewayClient({
    metrics: { metrics: deps.metrics, client: 'funding' },
    baseUrl: requireGatewayUrl(config), log, tracing: deps.tracing, timeoutMs: config.FUNDING_GATEWAY_TIMEOUT_MS,
    breaker: { resetTimeoutMs: config.FUNDING_BREAKER_RESET_MS },
  });
  const breakerOpen = new Gauge({ name: 'orderflow_funding_gateway_breaker_open', help: '1 while the payment gateway breaker of funding is open', registers: [deps.metrics.registry] });
  gateway.onStateChange((s) => breakerOpen.set(s === 'open' ? 1 : 0));
  // The bucket is provisioned with allow_direct: reads are direct gets, the cheapest read NATS has.
  const link = trackConnection(deps.nats.nc);
  const cache = countedReads(createStatusCache(await deps.kvm.open(FundingBuckets.status, { allow_direct: true }), {
    connected: link.connected, readTimeoutMs: config.FUNDING_STATUS_CACHE_TIMEOUT_MS,
  }), deps.metrics.statusCacheReads);
  const reads = createReads(deps.orm, deps.readOrm, log);
  // Every SSE and WebSocket connection of this process is fed by this one hub.
  const hub = createStatusHub({ nc: deps.nats.nc, connected: link.connected, read: reads.statuses, pollMs: config.FUNDING_SSE_POLL_MS, log });
  new Gauge({
    name: 'orderflow_funding_live_connections', help: 'SSE and WebSocket connections following an application status', registers: [deps.metrics.registry],
    collect() { this.set(hub.stats().listeners); },
  });
  new Gauge({
    name: 'orderflow_funding_live_upstream_subscriptions', help: 'NATS subscriptions feeding the live status connections (1 while any is open)', registers: [deps.metrics.registry],
    collect() { this.set(hub.stats().upstreamSubscriptions); },
  });
  applicationRoutes(deps.routes, { orm: deps.orm, reads, cache, hub, wakeOutbox: deps.wakeOutbox });

  // The status cache is written by this process's outbox relay as it publishes each status event.
  deps.onRelay(FundingSubjects.statusUpdated, statusRelayHook(cache, log));
  const consumers = await startFundingConsumers(deps, { routerBatch: config.FUNDING_ROUTER_BATCH });
  const disbursement = await startDisbursementConsumer(deps, gateway, { concurrency: config.FUNDING_DISBURSE_CONCURRENCY, resendAfterMs: config.FUNDING_PAYOUT_RESEND_AFTER_MS });
  const reconciler = startReconciler({
    orm: deps.orm, gateway, log, metrics: deps.metrics,
    intervalMs: config.FUNDING_RECONCILE_INTERVAL_MS, stuckAfterMs: config.FUNDING_STUCK_AFTER_MS,
  });
  log.info({ gateway: config.PAYMENT_GATEWAY_URL }, 'funding started');
  return {
    async stop() {
      await reconciler.stop();
      await Promise.all([...consumers, disbursement].map((w) => w.stop()));
      gateway.close();
      hub.stop();
    },
  };
}

/** The `funding` target. Every status transition writes its events to the outbox. */
export const module = defineModule({
  name: 'funding', schema: 'funding', entities, migrations, start, flags: [riskModelFlag],
  needs: { schemas: [], outboxRelay: true, dlqMover: false, externals: ['gateway'], relayHooks: [FundingSubjects.statusUpdated] },
});
