// The status cache: NATS KV bucket `funding-status`, one key per application (the
// seed's Redis `status:{id}`), kept current by the outbox relay of the process that
// publishes each `funding.status.updated` (statusRelayHook): the KV write is made while
// the event is published (its request leaves in the same socket write) and before the
// relay's drain commits, so a failure of either, or a crash, puts the rows back and the
// write is made again with their republishing. The status it writes has committed in
// Postgres already, so the cache may show it a moment before its event is in the stream. No
// consumer of the status event, and so no delivery and ack per status change. Events can
// arrive out of order (the outbox relay publishes a batch concurrently, replicas race), so
// a write only lands when its row version is newer than the cached one, by compare-and-set
// on the key's revision.
//
// The writer remembers the version and revision it last wrote per application (until
// the application's final status), so a status change normally costs one KV write: a
// create for the first status, an update against the remembered revision for the
// rest. Only when that compare-and-set fails (another replica wrote, the key was
// purged) does it read the key and decide again, as every write did before.
//
// Reads serve GET .../status, which must answer within 250 ms with NATS down. A KV get
// has no timeout of its own (it waits out the JetStream request timeout, 10 s, while
// the client reconnects), so a read is skipped at once while the connection is known
// to be down, and otherwise bounded by a short timeout: either way the caller falls
// back to Postgres. The bound covers the outage the client has not noticed yet (a
// half-open socket is only found by the ping, seconds later).
import type { NatsConnection } from '@nats-io/transport-node';
import type { KV, KvEntry } from '@nats-io/kv';
import { isFinalStatus, StatusUpdated, type ApplicationStatus } from '../../contracts/funding.ts';
import type { Logger, RelayHook } from '../kit/index.ts';

export type CachedStatus = { id: string; status: ApplicationStatus; updatedAt: string; version: number };

export type StatusCache = {
  /** The cached status, null on a miss; StatusCacheUnavailableError while NATS is down or slow. */
  get(id: string): Promise<CachedStatus | null>;
  /** False while the NATS connection is known to be down. */
  connected(): boolean;
  /** Store the event's status unless a newer version is cached. */
  apply(e: StatusUpdated): Promise<'stored' | 'stale'>;
  kv: KV;
};

const live = (e: KvEntry | null): e is KvEntry => !!e && e.operation === 'PUT' && e.value.length > 0;

/** Read the cache entry; a missing, deleted or unreadable key is a miss. */
export function parseEntry(e: KvEntry | null): CachedStatus | null {
  if (!live(e)) return null;
  try { return e.json<CachedStatus>(); } catch { return null; }
}

type Written = { version: number; revision: number };

/** The status cache could not be read in time; read Postgres instead. */
export class StatusCacheUnavailableError extends Error {
  override name = 'StatusCacheUnavailableError';
}

/**
 * Whether a NATS connection is up right now, from its status events (nats.js has no
 * synchronous getter). `const link = trackConnection(nc); if (!link.connected()) ...`
 */
export function trackConnection(nc: NatsConnection): { connected(): boolean } {
  let up = true; // connect() resolved, so it is up until told otherwise
  void (async () => {
    for await (const s of nc.status()) {
      if (s.type === 'disconnect' || s.type === 'reconnecting' || s.type === 'close') up = false;
      else if (s.type === 'reconnect') up = true;
    }
  })().catch(() => {});
  return { connected: () => up && !nc.isClosed() };
}

/** `p`, or a StatusCacheUnavailableError after `ms`; the timer never outlives `p`. */
async function within<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new StatusCacheUnavailableError(`status cache read took over ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([p, late]);
  } finally {
    clearTimeout(timer);
  }
}

/** Writes that lost a compare-and-set: someone else changed the key; read it and decide again. */
const lostRace = (err: unknown) => /wrong last sequence|key exists/i.test(String((err as Error)?.message));

export type StatusCacheOptions = {
  /** Applications whose last write this writer remembers (default 100,000). */
  remember?: number;
  /** Reads: false skips KV at once (see trackConnection); default always up. */
  connected?: () => boolean;
  /** Reads: give up on KV after this long (default 100 ms). */
  readTimeoutMs?: number;
};

/** `const cache = createStatusCache(await kvm.open('funding-status'), { connected: trackConnection(nc).connected })` */
export function createStatusCache(kv: KV, opts: StatusCacheOptions = {}): StatusCache {
  // What this writer stored last, per application still in flight. Bounded: beyond
  // `remember` entries the oldest is forgotten and costs a read next time.
  const written = new Map<string, Written>();
  const limit = opts.remember ?? 100_000;
  const remember = (id: string, version: number, revision: number, status: ApplicationStatus) => {
    written.delete(id);
    if (isFinalStatus(status)) return;
    written.set(id, { version, revision });
    if (written.size > limit) written.delete(written.keys().next().value!);
  };

  // null: no live key (never written, deleted or purged), so the write is a create.
  const readKey = async (id: string): Promise<Written | null> => {
    const current = await kv.get(id);
    return live(current) ? { version: parseEntry(current)?.version ?? 0, revision: current.revision } : null;
  };

  const connected = opts.connected ?? (() => true);
  return {
    kv,
    connected,
    async get(id) {
      if (!connected()) throw new StatusCacheUnavailableError('not connected to NATS');
      const got = kv.get(id);
      // A get abandoned at the timeout still settles later (at worst as a timeout error): no unhandled rejection.
      got.catch(() => {});
      return parseEntry(await within(got, opts.readTimeoutMs ?? 100));
    },
    async apply(e) {
      const id = e.applicationId;
      const value: CachedStatus = { id, status: e.status, updatedAt: e.timestamp, version: e.version };
      const data = JSON.stringify(value);
      // The key's version and revision: on the first round from this writer's memory (and
      // for the first status there is no key yet: create), otherwise, and after a lost race,
      // read from KV. A handful of rounds settles any real contention.
      for (let round = 0; round < 5; round++) {
        let remembered = round === 0 ? (written.get(id) ?? (e.version === 1 ? null : undefined)) : undefined;
        // A version in between was written by another process (the decision, by the scoring
        // process's relay): the remembered revision is stale, so read rather than lose a write.
        if (remembered && e.version > remembered.version + 1) remembered = undefined;
        const known = remembered !== undefined ? remembered : await readKey(id);
        if (known && known.version >= e.version) return 'stale';
        try {
          const revision = known ? await kv.update(id, data, known.revision) : await kv.create(id, data);
          remember(id, e.version, revision, e.status);
          return 'stored';
        } catch (err) {
          if (!lostRace(err)) throw err;
          written.delete(id);
        }
      }
      throw new Error(`status cache: could not store version ${e.version} of ${id} after 5 rounds of contention`);
    },
  };
}

/**
 * The relay hook writing the cache (see the top of this file): of one drain's status
 * events, the newest per application is written (the others would be stale by the time
 * they land), all applications at once. A write that fails throws, so the drain rolls
 * back and comes again; an event that does not parse is logged and skipped, since no
 * retry would make it parse and the relay must not stop for it.
 * `deps.onRelay(FundingSubjects.statusUpdated, statusRelayHook(cache, log))`
 */
export function statusRelayHook(cache: Pick<StatusCache, 'apply'>, log: Logger): RelayHook {
  return async (payloads) => {
    const newest = new Map<string, StatusUpdated>();
    for (const p of payloads) {
      let parsed;
      try { parsed = StatusUpdated.safeParse(JSON.parse(p)); } catch { parsed = undefined; }
      if (!parsed?.success) {
        log.error({ payload: p.slice(0, 500) }, 'status event in the outbox does not parse; the status cache skips it');
        continue;
      }
      const e = parsed.data;
      const seen = newest.get(e.applicationId);
      if (!seen || seen.version < e.version) newest.set(e.applicationId, e);
    }
    await Promise.all([...newest.values()].map((e) => cache.apply(e)));
  };
}
