// What tracing costs the HTTP intake path per request, in-process (no sockets): the kit's
// app (createApp: trace middleware when on, request id, body limit, JSON-only) in front of
// a POST handler that reads the body and builds the outbox row's headers, as orders does.
// `node bench/tracing-overhead.ts [kitDir]`: kitDir defaults to services/kit; point it at
// an older checkout's services/kit to compare with the code before tracing.
// Reports CPU µs per request (median of ROUNDS rounds of N). Modes: off (no endpoint), on (every request sampled, spans to a no-op exporter), on 10%.
import { pathToFileURL } from 'node:url';
import { resolve } from 'node:path';

const kitDir = resolve(process.argv[2] ?? 'services/kit');
const N = Number(process.env.N ?? 40_000);
const ROUNDS = Number(process.env.ROUNDS ?? 5);
const kit = await import(pathToFileURL(`${kitDir}/index.ts`).href);
const { createApp } = await import(pathToFileURL(`${kitDir}/http.ts`).href);
const tracingMod = await import(pathToFileURL(`${kitDir}/tracing.ts`).href).catch(() => null);
const { createLogger, createMetrics } = kit;

const exporter = { export: (_s: unknown, done: (r: { code: number }) => void) => done({ code: 0 }), shutdown: async () => {} };
// Made as each mode starts: "off" runs before any context manager is registered, as in a process without an endpoint.
const modes: [string, () => unknown][] = tracingMod
  ? [
    ['off', () => undefined],
    ['on (all sampled)', () => tracingMod.createTracing({ env: {}, service: 'bench', exporter })],
    ['on (10% sampled)', () => tracingMod.createTracing({ env: { OTEL_TRACES_SAMPLER: 'parentbased_traceidratio', OTEL_TRACES_SAMPLER_ARG: '0.1' }, service: 'bench', exporter })],
  ]
  : [['before tracing', () => undefined]];

const body = JSON.stringify({ orderId: 'A-1', email: 'a@b.c', items: [{ sku: 'S', quantity: 1 }] });
for (const [name, make] of modes) {
  const tracing = make();
  const app = createApp({ log: createLogger({ level: 'warn' }), metrics: createMetrics(), readiness: async () => [], tracing });
  app.post('/api/orders', async (c: any) => {
    const req = await c.req.json();
    const headers = tracingMod && kit.carryHeaders ? kit.carryHeaders(c.get('requestId')) : { 'X-Request-Id': c.get('requestId') };
    return c.json({ id: req.orderId, h: headers ? 1 : 0 }, 202);
  });
  const one = () => app.request('/api/orders', { method: 'POST', headers: { 'content-type': 'application/json' }, body });
  for (let i = 0; i < 5000; i++) await one();
  const perReq: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    // CPU time, not wall time: on a shared, loaded box the wall clock mostly measures the neighbours.
    const t = process.cpuUsage();
    for (let i = 0; i < N; i++) await one();
    const used = process.cpuUsage(t);
    perReq.push((used.user + used.system) / N);
  }
  perReq.sort((a, b) => a - b);
  console.log(`${name.padEnd(18)} median ${perReq[Math.floor(ROUNDS / 2)]!.toFixed(2)} µs CPU/request  (rounds: ${perReq.map((x) => x.toFixed(2)).join(', ')})`);
}
process.exit(0);
