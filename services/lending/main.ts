// P2P lending (seed 000): investor orders of up to 50,000 loans, reserved then
// invested in Temenos T24 item by item, at T24's rate cap and never above it.
import { randomBytes } from 'node:crypto';
import { T24_MEMBERS_BUCKET } from '../../contracts/lending.ts';
import { createRateShare, instanceId } from '../kit/index.ts';
import { defineModule } from '../kit/index.ts';
import type { Deps, Running } from '../kit/index.ts';
import { loadLendingConfig } from './config.ts';
import { startLendingConsumers, type LendingConsumers } from './consumers.ts';
import { createHttpFetch } from './http-fetch.ts';
import { createLendingMetrics } from './metrics.ts';
import { createPacer } from './pacer.ts';
import { lendingRoutes } from './routes.ts';
import { createT24Client } from './t24-client.ts';
import { entities, migrations } from './entities.ts';

export { entities, migrations };

export async function start(deps: Deps): Promise<Running> {
  const { log } = deps;
  const config = loadLendingConfig(deps.env, deps.endpoints.t24);
  const kv = await deps.kvm.open(T24_MEMBERS_BUCKET);
  // Unique per process even for in-process test clusters that share a pid.
  const memberId = `${instanceId(deps.env)}-${randomBytes(3).toString('hex')}`.replace(/[^A-Za-z0-9_-]/g, '_');
  const rateShare = createRateShare({
    kv, memberId, totalRps: config.T24_MAX_RPS, heartbeatMs: config.T24_HEARTBEAT_MS, name: 't24 rate',
    log: log.child({ component: 'rate-share' }),
  });
  await rateShare.start();
  // rate-share decides this replica's share; the pacer spends it (pacer.ts).
  const pacer = createPacer({ share: () => rateShare.currentShare(), margin: config.T24_RATE_MARGIN_PCT / 100 });
  const httpFetch = createHttpFetch();
  const t24 = createT24Client({
    baseUrl: config.T24_URL, rateShare: pacer, log: log.child({ component: 't24' }), timeoutMs: config.T24_TIMEOUT_MS, minTimeoutMs: config.T24_MIN_TIMEOUT_MS,
    metrics: { metrics: deps.metrics, client: 'lending' },
    fetch: httpFetch, tracing: deps.tracing,
    afterAmbiguous: config.T24_AFTER_AMBIGUOUS,
    breaker: {
      resetTimeout: config.T24_BREAKER_RESET_MS, errorThresholdPercentage: config.T24_BREAKER_ERROR_PCT, volumeThreshold: config.T24_BREAKER_VOLUME,
      minFailedLoans: config.T24_BREAKER_MIN_LOANS,
      // Opossum otherwise sorts every latency of its window on each failure: ~10% of our CPU at 1000 calls/s.
      rollingPercentilesEnabled: false,
    },
  });
  let consumers: LendingConsumers | undefined;
  const metrics = createLendingMetrics(deps.metrics.registry, () => ({ t24, rateShare, itemLimit: consumers?.itemLimit }));
  // 50,000 items with 64-character loan ids come to ~5 MB; the default limit is 1 MB.
  deps.app.bodyLimits.set('/api/lending/orders', 8 * 1024 * 1024);
  lendingRoutes(deps.routes, { orm: deps.orm, batchSize: config.LENDING_BATCH_SIZE });
  consumers = await startLendingConsumers(deps, { t24, config, metrics });
  log.info({ t24: config.T24_URL, maxRps: config.T24_MAX_RPS, memberId, batchSize: config.LENDING_BATCH_SIZE }, 'lending started');
  return {
    async stop() {
      await consumers?.stop();
      t24.shutdown();
      pacer.stop();
      httpFetch.close();
      await rateShare.stop();
    },
  };
}

/** The `lending` target. Batch, reserve and invest commands leave through the outbox. */
export const module = defineModule({
  name: 'lending', schema: 'lending', entities, migrations, start,
  needs: { schemas: [], outboxRelay: true, dlqMover: false, externals: ['t24'] },
});
