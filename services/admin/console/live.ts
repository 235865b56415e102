// Live views. A feed reads what changed since its last read, every `intervalMs`, only
// while at least one page listens, and hands each change to every listener: one query per
// interval per view type however many consoles are open. Pages listen over Server-Sent
// Events (streamSSE); console.js applies the events.
//
// Why poll Postgres rather than follow the NATS events: the page shows rows as the owning
// service stored them (an order's status is what the orders projection wrote, after the
// saga event), so reading the rows is what the page needs anyway, and an index on
// updated_at makes "what changed" one bounded range read. Following SAGA and ORDERS with
// ordered consumers would push sooner, but would still need that read, and would show a
// status the projection has not stored yet whenever the event outruns the commit.
import type { Context } from 'hono';
import { streamSSE, type SSEStreamingApi } from 'hono/streaming';
import type { Logger } from '../../kit/index.ts';

export type Feed<T> = {
  /** `const off = feed.listen((changes) => …)`; the first listener starts the polling, the last one's `off()` stops it. */
  listen(fn: (changes: T[]) => void | Promise<void>): () => void;
  stop(): void;
};

/** `createFeed({ intervalMs, read: async () => changes, log })`; `read` keeps its own cursor. */
export function createFeed<T>(o: { intervalMs: number; read: () => Promise<T[]>; start?: () => Promise<void>; log: Logger; what: string }): Feed<T> {
  const listeners = new Set<(changes: T[]) => void | Promise<void>>();
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  const tick = async () => {
    try {
      const changes = await o.read();
      if (changes.length) await Promise.all([...listeners].map(async (fn) => { try { await fn(changes); } catch { /* a closed page */ } }));
    } catch (err) {
      o.log.warn({ err: String(err), feed: o.what }, 'console live feed read failed; retrying');
    }
    if (listeners.size && !stopped) timer = setTimeout(tick, o.intervalMs);
    else timer = undefined;
  };
  return {
    listen(fn) {
      listeners.add(fn);
      if (!timer && !stopped) {
        // Marked as running at once, so a second listener arriving meanwhile does not start another loop.
        timer = setTimeout(() => {}, 0);
        void (o.start?.() ?? Promise.resolve()).catch(() => {}).then(() => { clearTimeout(timer); timer = setTimeout(tick, o.intervalMs); });
      }
      return () => { listeners.delete(fn); };
    },
    stop() { stopped = true; clearTimeout(timer); listeners.clear(); },
  };
}

/**
 * An SSE response that runs `body` with a `send(event, data)` and stays open until the
 * page goes away or `closeAll` (the process stopping) ends it. Comments every 15 s keep
 * proxies from closing an idle stream.
 */
export function liveStream(c: Context, open: Set<() => void>, body: (send: (event: string, data: unknown) => Promise<void>, stream: SSEStreamingApi) => Promise<(() => void) | void>): Response {
  c.header('Cache-Control', 'no-store');
  return streamSSE(c, async (stream) => {
    let close!: () => void;
    const closed = new Promise<void>((resolve) => { close = resolve; });
    open.add(close);
    stream.onAbort(() => close());
    const send = async (event: string, data: unknown) => { if (!stream.aborted && !stream.closed) await stream.writeSSE({ event, data: JSON.stringify(data) }); };
    const off = await body(send, stream);
    const keepAlive = setInterval(() => { void stream.write(': keep-alive\n\n').catch(() => close()); }, 15_000);
    await closed;
    clearInterval(keepAlive);
    open.delete(close);
    off?.();
  });
}
