// Streams and consumers: per stream its messages, per durable its pending, ack-pending,
// redelivered and waiting counts, and the DLQ entries per stream and consumer, refreshed
// live. The figures are the scrape-time gauges of kit/collectors.ts, read from this
// process's registry: one NATS read per collector TTL (5 s) however many pages and
// Prometheus scrapes ask.
import { Hono } from 'hono';
import { html } from 'hono/html';
import type { Metrics } from '../../kit/index.ts';
import { type Html } from './layout.ts';
import { page } from './layout.ts';
import { liveStream } from './live.ts';
import type { ConsoleEnv } from './session.ts';

type Sample = { labels: Record<string, string | number>; value: number };

async function samples(metrics: Metrics, name: string): Promise<Sample[]> {
  const m = metrics.registry.getSingleMetric(name);
  if (!m) return [];
  return ((await m.get()).values ?? []) as Sample[];
}

async function tables(metrics: Metrics): Promise<Html> {
  const [messages, pending, ackPending, redelivered, waiting, dlq] = await Promise.all([
    'orderflow_stream_messages', 'orderflow_consumer_pending', 'orderflow_consumer_ack_pending',
    'orderflow_consumer_redelivered', 'orderflow_consumer_waiting', 'orderflow_dlq_messages',
  ].map((n) => samples(metrics, n)));
  const key = (s: Sample) => `${s.labels.stream}/${s.labels.consumer}`;
  const by = (list: Sample[]) => new Map(list.map((s) => [key(s), s.value]));
  const [p, a, r, w, d] = [pending!, ackPending!, redelivered!, waiting!, dlq!].map(by);
  const dlqPerStream = new Map<string, number>();
  for (const s of dlq!) dlqPerStream.set(String(s.labels.stream), (dlqPerStream.get(String(s.labels.stream)) ?? 0) + s.value);
  const streams = [...messages!].sort((x, y) => String(x.labels.stream).localeCompare(String(y.labels.stream)));
  const durables = [...pending!].sort((x, y) => key(x).localeCompare(key(y)));
  return html`<table><caption>Streams</caption>
<thead><tr><th scope="col">Stream</th><th scope="col">Messages</th><th scope="col">Dead letters from it</th></tr></thead>
<tbody>${streams.map((s) => html`<tr><th scope="row">${s.labels.stream}</th><td>${s.value}</td><td>${dlqPerStream.get(String(s.labels.stream)) ? html`<a href="/admin/dlq?stream=${s.labels.stream}">${dlqPerStream.get(String(s.labels.stream))}</a>` : '0'}</td></tr>`)}</tbody></table>
<table><caption>Durable consumers</caption>
<thead><tr><th scope="col">Stream</th><th scope="col">Consumer</th><th scope="col">Pending</th><th scope="col">Ack pending</th><th scope="col">Redelivered</th><th scope="col">Waiting pulls</th><th scope="col">Dead letters</th></tr></thead>
<tbody>${durables.map((s) => {
    const k = key(s);
    const dead = d.get(k) ?? 0;
    return html`<tr><td>${s.labels.stream}</td><th scope="row">${s.labels.consumer}</th><td>${p.get(k) ?? 0}</td><td>${a.get(k) ?? 0}</td><td>${r.get(k) ?? 0}</td><td>${w.get(k) ?? 0}</td><td>${dead ? html`<a href="/admin/dlq?stream=${s.labels.stream}&amp;consumer=${s.labels.consumer}">${dead}</a>` : '0'}</td></tr>`;
  })}</tbody></table>`;
}

export function streamRoutes({ metrics, open, intervalMs }: { metrics: Metrics; open: Set<() => void>; intervalMs: number }) {
  return new Hono<ConsoleEnv>()
    .get('/', async (c) => c.html(page({
      title: 'Streams and consumers', section: 'streams', principal: c.get('principal'), body: html`
<section aria-labelledby="s-h" data-live="/admin/streams/live"><h2 id="s-h" class="visually-hidden">Figures</h2>
<p class="live" role="status" data-live-status>Figures are at most 5 seconds old.</p>
<div id="stream-tables">${await tables(metrics)}</div>
</section>`,
    })))
    .get('/live', (c) => liveStream(c, open, async (send, stream) => {
      let last = '';
      void (async () => {
        while (!stream.aborted && !stream.closed) {
          const markup = String(await tables(metrics).catch(() => ''));
          if (markup && markup !== last) { last = markup; await send('html', { id: 'stream-tables', html: markup }); }
          await stream.sleep(Math.max(intervalMs, 2000));
        }
      })();
    }));
}
