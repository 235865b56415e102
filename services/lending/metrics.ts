// Lending's own Prometheus series, on the process registry.
import { Counter, Gauge, type Registry } from 'prom-client';
import type { RateShare } from '../kit/index.ts';
import type { T24Client } from './t24-client.ts';

export type LendingMetrics = ReturnType<typeof createLendingMetrics>;

/** `const m = createLendingMetrics(deps.metrics.registry, () => ({ t24, rateShare }))` */
export function createLendingMetrics(registry: Registry, sources: () => { t24?: T24Client; rateShare?: RateShare; itemLimit?: () => number }) {
  const gauge = (name: string, help: string, read: (s: ReturnType<typeof sources>) => number | undefined) =>
    new Gauge({
      name, help, registers: [registry],
      collect() {
        const v = read(sources());
        if (v !== undefined) this.set(v);
      },
    });
  gauge('orderflow_t24_rate_share', 'Calls per second this replica may make to T24', (s) => s.rateShare?.currentShare());
  gauge('orderflow_t24_members', 'Live lending replicas sharing T24_MAX_RPS', (s) => s.rateShare?.members());
  gauge('orderflow_t24_breaker_open', '1 while the T24 breaker is open', (s) => (s.t24 ? Number(s.t24.isOpen()) : undefined));
  gauge('orderflow_t24_breaker_opened', 'Times the T24 breaker opened since start', (s) => s.t24?.stats().breaker.opened);
  gauge('orderflow_t24_recommended_concurrency', 'In-flight T24 calls the share and latency call for', (s) => s.t24?.recommendedConcurrency());
  gauge('orderflow_lending_item_limit', 'Item messages this replica holds at most now', (s) => s.itemLimit?.());
  gauge('orderflow_t24_received_429', '429s T24 sent this replica (0 when pacing works)', (s) => s.t24?.stats().received429);
  gauge('orderflow_t24_latency_p90_seconds', 'Estimated p90 of T24 call latency', (s) => (s.t24 ? s.t24.stats().latency.p90Ms / 1000 : undefined));
  return {
    items: new Counter({
      name: 'orderflow_lending_item_outcomes_total', help: 'Lending item handler outcomes by phase',
      labelNames: ['phase', 'outcome'] as const, registers: [registry],
    }),
  };
}
