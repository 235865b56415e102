// Prometheus metrics, one registry per process (passed around, never global).
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export type Metrics = ReturnType<typeof createMetrics>;

/** `const metrics = createMetrics()`; `metrics.registry.metrics()` renders the text format. */
export function createMetrics() {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  return {
    registry,
    httpSeconds: new Histogram({
      name: 'orderflow_http_request_duration_seconds', help: 'HTTP request latency',
      labelNames: ['method', 'route', 'status'] as const, registers: [registry],
      buckets: [0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    }),
    handlerOutcomes: new Counter({
      name: 'orderflow_handler_outcomes_total', help: 'JetStream handler outcomes (ok, retry, deferred, dlq, duplicate)',
      labelNames: ['consumer', 'outcome'] as const, registers: [registry],
    }),
    handlerSeconds: new Histogram({
      name: 'orderflow_handler_duration_seconds', help: 'JetStream handler duration',
      labelNames: ['consumer', 'outcome'] as const, registers: [registry],
      buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30],
    }),
    dlqDepth: new Gauge({ name: 'orderflow_dlq_depth', help: 'Messages in the DLQ stream', registers: [registry] }),
    outboxLagSeconds: new Gauge({ name: 'orderflow_outbox_lag_seconds', help: 'Age of the oldest unpublished outbox row', registers: [registry] }),
    outboxPending: new Gauge({ name: 'orderflow_outbox_pending', help: 'Unpublished outbox rows', registers: [registry] }),
    outboxPublished: new Counter({ name: 'orderflow_outbox_published_total', help: 'Outbox rows published', registers: [registry] }),
  };
}

/** Count a handler outcome and its duration for one consumer. `const outcome = outcomeRecorder(metrics, 'notifications'); outcome('ok', started)` */
export function outcomeRecorder(metrics: Metrics | undefined, consumer: string) {
  return (result: string, started: number) => {
    metrics?.handlerOutcomes.inc({ consumer, outcome: result });
    metrics?.handlerSeconds.observe({ consumer, outcome: result }, (performance.now() - started) / 1000);
  };
}
