import { afterEach, describe, expect, it } from 'vitest';
import { createMetrics, type Metrics } from '../metrics.ts';
import { serveTestApp } from '../../testing/index.ts';
import { eventually } from '../../testing/index.ts';

type Served = Awaited<ReturnType<typeof serveTestApp>>;
let t: Served | undefined;
afterEach(async () => { await t?.close(); t = undefined; });

const shedCount = async (metrics: Metrics, reason: string) =>
  (await metrics.httpShed.get()).values.find((v) => v.labels.reason === reason)?.value ?? 0;

/** An app whose /slow handler holds its slot until the test lets it go; `ran` counts handler runs. */
async function serveGated(admission: { maxInflight: number; queueMax: number; queueTimeoutMs: number; shedLoopLagMs?: number; loopLagMs?: () => number }) {
  const metrics = createMetrics();
  const gates: (() => void)[] = [];
  let ran = 0;
  t = await serveTestApp((app) => {
    app.get('/slow', async (c) => {
      ran++;
      await new Promise<void>((resolve) => gates.push(resolve));
      return c.json({ ok: true });
    });
    app.get('/fast', (c) => c.json({ ok: true }));
  }, { metrics, admission: { shedLoopLagMs: 0, ...admission } });
  // As a scrape reads it: the gauge collects admission control's state.
  const queued = async () => (await metrics.httpAdmission.get()).values.find((v) => v.labels.what === 'queued')?.value;
  return {
    url: t.url, metrics, ran: () => ran, open: () => { for (const g of gates.splice(0)) g(); }, waiting: () => gates.length,
    queuedIs: (n: number) => eventually(async () => expect(await queued()).toBe(n)),
  };
}

describe('admission control', () => {
  it('queues a request beyond maxInflight and runs it when a slot frees', async () => {
    const s = await serveGated({ maxInflight: 1, queueMax: 4, queueTimeoutMs: 60_000 });
    const first = fetch(`${s.url}/slow`);
    await eventually(() => expect(s.waiting()).toBe(1));
    const second = fetch(`${s.url}/slow`);
    await s.queuedIs(1);
    expect(s.ran()).toBe(1);
    s.open();
    expect((await first).status).toBe(200);
    await eventually(() => expect(s.waiting()).toBe(1));
    s.open();
    expect((await second).status).toBe(200);
    expect(s.ran()).toBe(2);
  });

  it('refuses at once with 503 UNAVAILABLE and Retry-After when the queue is full', async () => {
    const s = await serveGated({ maxInflight: 1, queueMax: 1, queueTimeoutMs: 60_000 });
    const first = fetch(`${s.url}/slow`);
    await eventually(() => expect(s.waiting()).toBe(1));
    const queued = fetch(`${s.url}/slow`);
    await s.queuedIs(1);
    const refused = await fetch(`${s.url}/fast`);
    expect(refused.status).toBe(503);
    expect(refused.headers.get('retry-after')).toBe('1');
    expect(refused.headers.get('x-request-id')).toBeTruthy();
    expect((await refused.json()).error.code).toBe('UNAVAILABLE');
    expect(await shedCount(s.metrics, 'queue_full')).toBe(1);
    s.open();
    await first;
    await eventually(() => expect(s.waiting()).toBe(1));
    s.open();
    expect((await queued).status).toBe(200);
  });

  it('gives a request that waited queueTimeoutMs its 503, and never runs it', async () => {
    const s = await serveGated({ maxInflight: 1, queueMax: 4, queueTimeoutMs: 50 });
    const first = fetch(`${s.url}/slow`);
    await eventually(() => expect(s.waiting()).toBe(1));
    const late = await fetch(`${s.url}/slow`);
    expect(late.status).toBe(503);
    expect((await late.json()).error.code).toBe('UNAVAILABLE');
    expect(await shedCount(s.metrics, 'queue_timeout')).toBe(1);
    s.open();
    expect((await first).status).toBe(200);
    expect(s.ran()).toBe(1);
  });

  it('drops a waiting request whose client went away: its handler never runs and its place is freed', async () => {
    const s = await serveGated({ maxInflight: 1, queueMax: 1, queueTimeoutMs: 60_000 });
    const first = fetch(`${s.url}/slow`);
    await eventually(() => expect(s.waiting()).toBe(1));
    const ac = new AbortController();
    const abandoned = fetch(`${s.url}/slow`, { signal: ac.signal }).catch((e: Error) => e.name);
    await s.queuedIs(1);
    ac.abort();
    expect(await abandoned).toBe('AbortError');
    await eventually(async () => expect(await shedCount(s.metrics, 'client_gone')).toBe(1));
    // Its place in the queue is free again: another request may wait there.
    const next = fetch(`${s.url}/fast`);
    await s.queuedIs(1);
    s.open();
    expect((await first).status).toBe(200);
    expect((await next).status).toBe(200);
    expect(s.ran()).toBe(1);
  });

  it('refuses new requests at once while the event loop lags past shedLoopLagMs, and never the probes', async () => {
    let lag = 0;
    const s = await serveGated({ maxInflight: 100, queueMax: 100, queueTimeoutMs: 60_000, shedLoopLagMs: 500, loopLagMs: () => lag });
    expect((await fetch(`${s.url}/fast`)).status).toBe(200);
    lag = 800;
    const refused = await fetch(`${s.url}/fast`);
    expect(refused.status).toBe(503);
    expect(refused.headers.get('retry-after')).toBe('1');
    expect((await fetch(`${s.url}/healthz`)).status).toBe(200);
    expect((await fetch(`${s.url}/metrics`)).status).toBe(200);
    expect(await shedCount(s.metrics, 'loop_lag')).toBe(1);
    lag = 10;
    expect((await fetch(`${s.url}/fast`)).status).toBe(200);
  });

  it('takes on every request when no limits are given', async () => {
    t = await serveTestApp((app) => { app.get('/fast', (c) => c.json({ ok: true })); });
    const answers = await Promise.all(Array.from({ length: 50 }, () => fetch(`${t!.url}/fast`)));
    expect(answers.every((r) => r.status === 200)).toBe(true);
  });
});

describe('loopLagMeter', () => {
  it('reads the event loop blocked for a while as lag, then forgets it after a quiet window', async () => {
    const { loopLagMeter } = await import('./admission.ts');
    const lag = loopLagMeter(200);
    // The histogram's first sample (100 ms resolution) only starts its clock: let it take two.
    await new Promise((r) => setTimeout(r, 250));
    const until = performance.now() + 600;
    while (performance.now() < until) { /* block the loop */ }
    await new Promise((r) => setTimeout(r, 30));
    expect(lag()).toBeGreaterThan(450);
    // Two quiet windows later the block is out of both.
    await new Promise((r) => setTimeout(r, 250));
    lag();
    await new Promise((r) => setTimeout(r, 250));
    // (Loosely: a loaded box delays timers too, but not by the 600 ms block.)
    expect(lag()).toBeLessThan(450);
  });
});
