// Cluster-wide shares of a rate: the shares of every replica, summed, never exceed
// `totalRps`. Two users: lending paces its T24 calls on it (lending/pacer.ts), and the
// HTTP rate limiter scales every per-principal and per-address limit by this replica's
// fraction of the cluster (http/rate-limit.ts).
//
// Membership. Each replica heartbeats `members.<memberId>` into a KV bucket
// with a TTL (max_age), advertising the share it may use. A replica that dies
// stops heartbeating and its key ages out. Every heartbeat each member reads
// the live entries and computes
//
//   target  = floor(T / n), the first T mod n member ids (sorted) getting +1,
//             so that equal views sum to exactly T
//   room    = T - sum of the shares the OTHER live members advertise
//   allowed = max(0, min(target, room))
//
// Why the sum stays under T while membership changes (the views differ):
// - Decreases are applied locally first and advertised afterwards, so an
//   advertised share is never below what the member really uses.
// - Increases are two-phase. The member first advertises the larger share as a
//   claim (others subtract it from their room at once) and only applies it on
//   a later heartbeat at least max(heartbeat, 1 s) after the claim was stored,
//   re-checking room against a fresh read. Two members that claimed at the same
//   time from views that missed each other's claims both see each other's
//   claims at their apply read (the claim round trip is kept under half a
//   heartbeat, else the claim is not trusted), and each applies at most
//   T - (the other's claim) - rest, so together they stay within T. The 1 s
//   gap also means the previous holder's last calls have left the server's
//   sliding window before the new holder speeds up.
// - A newcomer therefore starts at 0, stricter than share/(n+1): it gets a
//   share only once the old members have seen it, shrunk and advertised that.
// - Lease. A member that cannot heartbeat (NATS down, partition) must stop on
//   its own before its key can expire, or others would take its share while
//   it still calls T24: it fences itself at lastPutSentAt + ttl - heartbeat.
//   Keys expire at store time + ttl >= sent time + ttl, never earlier.
// - Rejoin after a lapse. A heartbeat whose put completes after the previous
//   lease ended (the process stalled between its read and its put, or NATS was
//   away for longer than the lease) may have let our key expire in between, and
//   the others may have taken our share back on a view without us, while our
//   read predates their claims. Resuming `applied` there would count the share
//   twice (a bug of the first version: held 5 of 10 while the other held 10).
//   So the member stays at 0 until a read that started after that put (our key
//   is back, so others' advertised shares bound what they use) has confirmed
//   what it may hold; increases take the claim path as usual.
// Assumptions: every replica is configured with the same T; a heartbeat round
// trip (read + put) is well under half a heartbeat.
//
// Spending the share is the caller's work: lending/pacer.ts (a GCRA over
// currentShare()), http/rate-limit.ts (token buckets scaled by share / T). The share
// is an integer because a fractional one would allow ceil(R) calls per window;
// members beyond T get 0.
import { setTimeout as sleep } from 'node:timers/promises';
import { Bucket } from '@nats-io/kv';
import type { KV } from '@nats-io/kv';
import type { Logger } from 'pino';

export type RateShareLog = Pick<Logger, 'debug' | 'info' | 'warn' | 'error'>;

export type RateShareOptions = {
  /** A KV bucket with a TTL, e.g. `await new Kvm(nc).open('t24-members')`; one bucket per total. */
  kv: KV;
  memberId: string;
  /** The cluster-wide total (e.g. T24_MAX_RPS); every replica must use the same value. */
  totalRps: number;
  heartbeatMs?: number;
  log?: RateShareLog;
  /** Names the share in log lines ("t24", "rate limit"). */
  name?: string;
};

export type RateShare = {
  /** Reads the bucket's TTL and writes the first heartbeat; the share follows on later heartbeats. */
  start(): Promise<void>;
  /** Stops heartbeating, drops the share to 0 and removes the member key. */
  stop(): Promise<void>;
  /** Calls per second this member may make now (0 while joining, fenced or rejoining). */
  currentShare(): number;
  /**
   * The share as last agreed, ignoring the lease: what a caller that prefers staying up to the
   * exact sum keeps spending while cut off from NATS (the HTTP limiter does; lending does not).
   */
  heldShare(): number;
  /**
   * True while the share is not confirmed by a live lease: no heartbeat got through for
   * ttl - heartbeat, or the first one after that has not yet re-read the members (and at start).
   */
  isolated(): boolean;
  /** Live members in the last heartbeat's view, this one included. */
  members(): number;
};

type Advert = { share: number; applied: number; at: number };

const keyPrefix = 'members.';

/** This replica's share of a cluster-wide rate, over a KV membership bucket. `const rs = createRateShare({ kv, memberId: hostname(), totalRps: 50 }); await rs.start(); rs.currentShare()` */
export function createRateShare(options: RateShareOptions): RateShare {
  const { kv, memberId, log } = options;
  const what = `${options.name ?? 'rate'} share`;
  const totalRps = Math.floor(options.totalRps);
  const heartbeatMs = options.heartbeatMs ?? 1000;
  if (!(totalRps >= 1)) throw new RangeError(`totalRps must be at least 1, got ${options.totalRps}`);
  if (!/^[A-Za-z0-9_-]+$/.test(memberId)) throw new RangeError(`memberId must be a single KV token ([A-Za-z0-9_-]+), got ${memberId}`);
  const myKey = keyPrefix + memberId;
  // Increases wait this long after their claim is stored (see the header).
  const claimSettleMs = Math.max(heartbeatMs, 1000);

  let ttlMs = 0;
  let running = false;
  let tickTimer: NodeJS.Timeout | undefined;
  let ticking: Promise<void> | undefined;

  let applied = 0;
  let claim = 0;
  let claimStoredAt = 0;
  let memberCount = 1;
  let leaseUntil = 0;
  // Set when a put completed after the previous lease ended: see "Rejoin after a lapse".
  let rejoinAfter = 0;

  function effectiveShare(now: number): number {
    return now < leaseUntil && rejoinAfter === 0 ? applied : 0;
  }

  // The live member keys, as a snapshot of what the stream holds now: keys
  // that aged out are absent. Stream info with a subject filter is one request
  // and has no end-of-data race; kv.keys()/history() consumers can miss their
  // end condition while members keep overwriting their keys.
  async function liveKeys(): Promise<string[]> {
    if (kv instanceof Bucket) {
      const si = await kv.jsm.streams.info(kv.stream, { subjects_filter: kv.fullKeyName(`${keyPrefix}>`) });
      return Object.keys(si.state.subjects ?? {}).map((subject) => kv.decodeKey(subject.substring(kv.prefixLen)));
    }
    const keys: string[] = [];
    const iter = await kv.keys(`${keyPrefix}>`);
    const deadline = setTimeout(() => iter.stop(new Error('listing members took too long')), heartbeatMs / 2);
    try {
      for await (const k of iter) keys.push(k);
    } finally {
      clearTimeout(deadline);
    }
    return keys;
  }

  async function readMembers(): Promise<Map<string, Advert>> {
    const keys = (await liveKeys()).filter((k) => k !== myKey);
    const entries = await Promise.all(keys.map((k) => kv.get(k)));
    const out = new Map<string, Advert>();
    for (const e of entries) {
      // Gone since the listing, or deleted by a graceful stop.
      if (!e || e.operation === 'DEL' || e.operation === 'PURGE') continue;
      out.set(e.key.slice(keyPrefix.length), parseAdvert(e.value, totalRps));
    }
    return out;
  }

  async function putAdvert(): Promise<number> {
    const sentAt = Date.now();
    const leaseBefore = leaseUntil;
    const advert: Advert = { share: Math.max(applied, claim), applied, at: sentAt };
    await kv.put(myKey, JSON.stringify(advert));
    // Checked before the lease is extended, in the same synchronous step: see "Rejoin after a lapse".
    const doneAt = Date.now();
    if (doneAt >= leaseBefore) {
      if (applied > 0 && rejoinAfter === 0) log?.warn({ memberId, share: applied, lapsedMs: doneAt - leaseBefore }, `${what}: lease lapsed; holding 0 until the next heartbeat confirms the share`);
      rejoinAfter = doneAt;
      claim = 0;
      claimStoredAt = 0;
    }
    leaseUntil = sentAt + ttlMs - heartbeatMs;
    return sentAt;
  }

  async function tick(): Promise<void> {
    const readAt = Date.now();
    const seen = await readMembers();
    // Stopped meanwhile: advertise nothing more (stop may already have removed our key).
    if (!running) return;
    seen.delete(memberId);
    const ids = [...seen.keys(), memberId].sort();
    const n = ids.length;
    const rank = ids.indexOf(memberId);
    const target = Math.floor(totalRps / n) + (rank < totalRps % n ? 1 : 0);
    let othersSum = 0;
    for (const a of seen.values()) othersSum += a.share;
    const allowed = Math.max(0, Math.min(target, totalRps - othersSum));
    const before = applied;
    if (n !== memberCount) log?.info({ memberId, members: n, previous: memberCount }, `${what}: membership changed`);
    memberCount = n;

    let claimAfterPut = false;
    // A read that started after a lapsed put landed sees every claim made on a view without us.
    if (readAt >= rejoinAfter) rejoinAfter = 0;
    if (allowed <= applied) {
      // Shrink before telling anyone (or hold steady); drop any pending claim.
      applied = allowed;
      claim = 0;
    } else {
      const claimValid = claim > applied && claimStoredAt > 0;
      if (claimValid && readAt >= claimStoredAt + claimSettleMs) {
        applied = Math.min(claim, allowed);
        claim = allowed > applied ? allowed : 0;
        claimAfterPut = claim > 0;
      } else if (claimValid && allowed <= claim) {
        // A smaller claim is covered by the larger one the others already saw.
        claim = allowed;
      } else {
        claim = allowed;
        claimAfterPut = true;
      }
    }

    const sentAt = await putAdvert();
    if (rejoinAfter > 0) return;
    if (claimAfterPut) {
      // The proof in the header needs a claim's read and put close together.
      const roundTrip = Date.now() - readAt;
      claimStoredAt = roundTrip <= heartbeatMs / 2 ? sentAt : 0;
      if (claimStoredAt === 0) log?.warn({ memberId, roundTrip }, `${what}: slow heartbeat, claim not trusted`);
    }
    if (applied !== before) log?.info({ memberId, share: applied, previous: before, members: n }, `${what} changed`);
  }

  function loop() {
    if (!running) return;
    ticking = tick()
      .catch((err: unknown) => {
        log?.warn({ err, memberId, leaseLeftMs: leaseUntil - Date.now() }, `${what}: heartbeat failed`);
      })
      .finally(() => {
        ticking = undefined;
        if (!running) return;
        tickTimer = setTimeout(loop, heartbeatMs);
      });
  }

  return {
    async start() {
      if (running) return;
      const status = await kv.status();
      ttlMs = status.ttl;
      if (!(ttlMs > 0)) throw new Error(`KV bucket ${status.bucket} has no TTL: dead members would keep their share forever`);
      if (ttlMs < 2 * heartbeatMs) log?.warn({ ttlMs, heartbeatMs }, `${what}: bucket TTL under two heartbeats, the lease will flap`);
      running = true;
      // Announce with share 0 first so the others see us before we claim anything.
      await putAdvert();
      tickTimer = setTimeout(loop, heartbeatMs);
    },
    async stop() {
      if (!running) return;
      running = false;
      if (tickTimer) clearTimeout(tickTimer);
      // A heartbeat in flight normally ends within half a heartbeat; with NATS gone it would
      // wait out its request timeout (10 s), which only delays the stop: the loop ends either way.
      await Promise.race([ticking, sleep(heartbeatMs)]);
      applied = 0;
      claim = 0;
      leaseUntil = 0;
      rejoinAfter = 0;
      // Our share is already 0 locally, so others may take it as soon as the key is gone. If
      // NATS cannot take the delete now, the key ages out with the bucket's TTL instead.
      const answered = kv.delete(myKey).then(() => true, (err: unknown) => { log?.warn({ err, memberId }, `${what}: could not remove member key`); return true; });
      if (!(await Promise.race([answered, sleep(heartbeatMs).then(() => false)]))) {
        log?.warn({ memberId }, `${what}: member key not removed in time; it ages out with the bucket TTL`);
      }
    },
    currentShare: () => effectiveShare(Date.now()),
    heldShare: () => (running ? applied : 0),
    isolated: () => running && (Date.now() >= leaseUntil || rejoinAfter > 0),
    members: () => memberCount,
  };
}

function parseAdvert(value: Uint8Array, totalRps: number): Advert {
  try {
    const v = JSON.parse(new TextDecoder().decode(value)) as Partial<Advert>;
    if (typeof v.share === 'number' && Number.isFinite(v.share) && v.share >= 0) {
      return { share: v.share, applied: typeof v.applied === 'number' ? v.applied : v.share, at: typeof v.at === 'number' ? v.at : 0 };
    }
  } catch {
    // fall through
  }
  // An entry we cannot read might be using anything: assume the worst.
  return { share: totalRps, applied: totalRps, at: 0 };
}
