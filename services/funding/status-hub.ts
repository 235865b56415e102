// Live status for the SSE and WebSocket connections: one place follows status changes
// and fans them out to the connections watching each application. A connection costs
// an entry in a Map<applicationId, Set<listener>>, never a subscription or a poll of
// its own.
//
// Upstream is ONE core NATS subscription to `funding.status.updated` (the events the
// outbox relay publishes), held while anyone watches. Core rather than a KV watch: no
// JetStream consumer to create or recreate, and the events arrive without waiting for
// the status consumer's KV write. Core NATS delivers at most once, so Postgres covers
// what it cannot: while the connection is down, one batched read of every watched
// application each `pollMs` (one row per application however many connections watch
// it), one more right after it comes back (for changes published while the
// subscription was away), and every `safetyPollMs` while up (a message dropped for a
// slow consumer). Statuses carry the row version; listeners keep the newest.
import type { NatsConnection, Subscription } from '@nats-io/transport-node';
import { FundingSubjects, isFinalStatus, StatusUpdated } from '../../contracts/funding.ts';
import type { Logger } from '../kit/index.ts';
import type { CachedStatus } from './status-cache.ts';

export type StatusListener = (s: CachedStatus) => void;

export type HubStats = {
  /** Upstream subscriptions: 1 while anyone watches, else 0. */
  upstreamSubscriptions: number;
  /** Applications watched. */
  applications: number;
  /** Connections (listeners) across them. */
  listeners: number;
  /** Rows the fallback polls have read so far. */
  polledRows: number;
};

export type Watch = {
  /** Resolves once changes published from now on reach the listener (at once while NATS is down: the poll covers). */
  ready: Promise<void>;
  stop(): void;
};

export type StatusHub = {
  /** `const w = hub.watch(id, (s) => send(s)); await w.ready; ... w.stop()` */
  watch(id: string, listener: StatusListener): Watch;
  stats(): HubStats;
  stop(): void;
};

export type StatusHubOptions = {
  nc: NatsConnection;
  /** False while the NATS connection is known to be down (status-cache.ts trackConnection). */
  connected: () => boolean;
  /** The statuses of these applications from Postgres; ids without a row are left out. */
  read: (ids: string[]) => Promise<CachedStatus[]>;
  pollMs: number;
  safetyPollMs?: number;
  log: Logger;
};

const POLL_CHUNK = 1000;

/** `const hub = createStatusHub({ nc, connected, read: (ids) => statusesFromDb(orm, ids), pollMs: 2000, log })` */
export function createStatusHub(opts: StatusHubOptions): StatusHub {
  const watchers = new Map<string, Set<StatusListener>>();
  let listeners = 0;
  let polledRows = 0;
  let sub: Subscription | undefined;
  let subscribed: Promise<void> = Promise.resolve();
  let poller: ReturnType<typeof setInterval> | undefined;
  let polling = false;
  let wasDown = false;
  let lastPoll = Date.now();
  let hubStopped = false;
  const safetyMs = opts.safetyPollMs ?? opts.pollMs * 10;

  const dispatch = (s: CachedStatus) => {
    const set = watchers.get(s.id);
    if (!set) return;
    for (const l of set) {
      try { l(s); } catch (err) { opts.log.warn({ err: String(err), applicationId: s.id }, 'status listener failed'); }
    }
  };

  const onMessage = (data: Uint8Array) => {
    let parsed;
    try { parsed = StatusUpdated.safeParse(JSON.parse(new TextDecoder().decode(data))); } catch { return; }
    // A malformed event is the status consumer's to dead-letter; here it is just not news.
    if (!parsed.success) return;
    const e = parsed.data;
    dispatch({ id: e.applicationId, status: e.status, updatedAt: e.timestamp, version: e.version });
  };

  const subscribe = () => {
    try {
      sub = opts.nc.subscribe(FundingSubjects.statusUpdated, { callback: (err, msg) => { if (!err) onMessage(msg.data); } });
    } catch (err) {
      // A closed connection: the poll serves alone.
      opts.log.warn({ err: String(err) }, 'status subscription failed; polling Postgres only');
      sub = undefined;
      return;
    }
    // The SUB must reach the server before a watcher reads its first status, or a change
    // published in between is seen by neither. Bounded: with NATS down the poll covers it.
    subscribed = opts.connected()
      ? Promise.race([opts.nc.flush(), new Promise<void>((r) => setTimeout(r, 1000).unref())]).catch(() => {})
      : Promise.resolve();
  };

  const poll = async () => {
    const ids = [...watchers.keys()];
    for (let i = 0; i < ids.length; i += POLL_CHUNK) {
      const rows = await opts.read(ids.slice(i, i + POLL_CHUNK));
      polledRows += rows.length;
      for (const s of rows) dispatch(s);
    }
  };

  const tick = () => {
    if (polling) return;
    const up = opts.connected() && sub !== undefined;
    const due = !up || wasDown || Date.now() - lastPoll >= safetyMs;
    if (!due) return;
    // After an outage, one more pass once the subscription is back catches the gap.
    const catchUp = up && wasDown;
    polling = true;
    lastPoll = Date.now();
    void poll().then(
      () => { if (catchUp) wasDown = false; },
      (err) => opts.log.debug({ err: String(err) }, 'status poll failed'),
    ).finally(() => { polling = false; if (!up) wasDown = true; });
  };

  const startUpstream = () => {
    subscribe();
    lastPoll = Date.now();
    wasDown = false;
    poller = setInterval(tick, opts.pollMs);
    poller.unref();
  };

  const stopUpstream = () => {
    clearInterval(poller);
    poller = undefined;
    sub?.unsubscribe();
    sub = undefined;
    subscribed = Promise.resolve();
  };

  return {
    watch(id, listener) {
      // A connection that arrives while the service stops gets its first status and nothing more.
      if (hubStopped) return { ready: Promise.resolve(), stop() {} };
      if (!watchers.size) startUpstream();
      let set = watchers.get(id);
      if (!set) watchers.set(id, (set = new Set()));
      // One function per watch, so the same listener watching twice still stops once each.
      const entry: StatusListener = (s) => listener(s);
      set.add(entry);
      listeners++;
      let stopped = false;
      return {
        ready: subscribed,
        stop() {
          if (stopped) return;
          stopped = true;
          const s = watchers.get(id);
          if (!s?.delete(entry)) return;
          listeners--;
          if (!s.size) watchers.delete(id);
          if (!watchers.size) stopUpstream();
        },
      };
    },
    stats: () => ({ upstreamSubscriptions: sub ? 1 : 0, applications: watchers.size, listeners, polledRows }),
    stop() {
      hubStopped = true;
      watchers.clear();
      listeners = 0;
      stopUpstream();
    },
  };
}

/**
 * Follow one application for one connection: `first` at once, then every newer status
 * in version order without repeats. After the watch is in place the status is read
 * again, so a change between the caller's first read and the watch is not lost.
 * `const stop = followStatus({ hub, id, first, read, send: (s) => ws.send(JSON.stringify(s)) })`
 */
export function followStatus(opts: { hub: StatusHub; id: string; first: CachedStatus; read: (id: string) => Promise<CachedStatus | null>; send: (s: CachedStatus) => void }): () => void {
  let last = 0;
  let stopped = false;
  const offer = (s: CachedStatus) => {
    if (stopped || s.version <= last) return;
    last = s.version;
    opts.send(s);
  };
  offer(opts.first);
  // Already final: nothing more will come, and nothing to subscribe to.
  if (isFinalStatus(opts.first.status)) return () => { stopped = true; };
  const w = opts.hub.watch(opts.id, offer);
  void w.ready.then(() => (stopped ? null : opts.read(opts.id))).then((s) => { if (s) offer(s); }, () => {});
  return () => { stopped = true; w.stop(); };
}
