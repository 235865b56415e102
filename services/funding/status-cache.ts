// The status cache: NATS KV bucket `funding-status`, one key per application, kept
// current by the status consumer from `funding.status.updated` (the seed's Redis
// `status:{id}`). Events can arrive out of order (the outbox relay publishes a batch
// concurrently, replicas race), so a write only lands when its row version is newer
// than the cached one, by compare-and-set on the key's revision.
import type { KV, KvEntry } from '@nats-io/kv';
import type { ApplicationStatus, StatusUpdated } from '../../contracts/funding.ts';

export type CachedStatus = { id: string; status: ApplicationStatus; updatedAt: string; version: number };

export type StatusCache = {
  get(id: string): Promise<CachedStatus | null>;
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

/** `const cache = createStatusCache(await kvm.open('funding-status'))` */
export function createStatusCache(kv: KV): StatusCache {
  return {
    kv,
    async get(id) {
      return parseEntry(await kv.get(id));
    },
    async apply(e) {
      const value: CachedStatus = { id: e.applicationId, status: e.status, updatedAt: e.timestamp, version: e.version };
      const data = JSON.stringify(value);
      // A lost race re-reads and decides again; a handful of rounds settles any real contention.
      for (let round = 0; round < 5; round++) {
        const current = await kv.get(e.applicationId);
        const cached = parseEntry(current);
        if (cached && cached.version >= e.version) return 'stale';
        try {
          if (live(current)) await kv.update(e.applicationId, data, current.revision);
          else await kv.create(e.applicationId, data);
          return 'stored';
        } catch (err) {
          if (!/wrong last sequence|key exists/i.test(String((err as Error)?.message))) throw err;
        }
      }
      throw new Error(`status cache: could not store version ${e.version} of ${e.applicationId} after 5 rounds of contention`);
    },
  };
}
