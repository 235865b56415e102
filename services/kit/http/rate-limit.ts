// The contract's rate limits (CONTRACTS.md, "Identity and access"): per principal
// (RATE_LIMIT_RPS with a burst of RATE_LIMIT_BURST, admins included) and per client
// address for anonymous calls (RATE_LIMIT_ANON_RPS, burst RATE_LIMIT_ANON_BURST), each a
// limit that holds summed over every replica of the cluster. Over it: 429 RATE_LIMITED
// with Retry-After; every answer carries RateLimit-Limit, -Remaining and -Reset. (The
// per-account login limit lives in Postgres, identity/lockout.ts.)
//
// How the replicas stay under one limit: shares of the cluster (kit/rate-share.ts).
// Every replica is a member of the `rate-limit-members` KV bucket and holds a share of
// SHARE_UNITS (1000); its fraction f = share / 1000, and the fractions of all live
// members sum to at most 1 at every instant (rate-share's two-phase increases and
// self-fencing lease; a member killed with -9 keeps its share counted until its key
// ages out, so it is never counted twice). Each replica then runs one token bucket per
// key locally, at rate R·f with capacity B·f, and answers from memory: no NATS round
// trip per request. In any window of W seconds the replicas together accept at most
// Σ(B·f_i + R·f_i·W) ≤ B + R·W for one key, since a bucket never holds more than its
// capacity (a shrinking f clamps it at once; a growing f only raises the cap, the
// tokens come at the rate) and a new key's bucket starts full, which is within it.
//
// Design note: why the same fraction for every key. Keys are many (every principal,
// every address) and a hot key is usually hot on one replica at a time. Options:
// - Static split by membership (this): each replica allows limit/N for every key.
//   Never over, no per-key coordination, O(1) per request. Fair when the balancer
//   spreads each client's requests over the replicas, which is what the production
//   path does (ingress-nginx balances every request over the gateway pods' endpoints,
//   kept-alive upstream connections included): a client then gets its whole limit in
//   aggregate. A client pinned to one replica (one kept-alive connection straight to
//   one pod) gets limit/N; with 3 gateway replicas a 100 rps principal gets ~33 there.
// - Demand-weighted per-key shares (a replica that keeps refusing a key claims a larger
//   part of that key's limit, agreed through KV): fair for pinned clients too, but it
//   is a rate-share membership per hot key (a KV put per hot key per replica per
//   heartbeat) and a cold replica must start each key at 0 or at a reserved floor, so
//   a pinned client's first requests elsewhere would wait out a claim. Not done: the
//   static split is never over the sum, and in the deployed topology fair enough.
// Isolation (the one place the sum can be exceeded, chosen on purpose): a replica cut
// off from NATS loses its lease. Lending then stops calling T24; the limiter instead
// keeps the fraction it last held, because orders must still be taken while NATS is
// down (orders/intake-faults.test.ts) and the API must not answer 503 to everyone for
// a NATS blip. With NATS down for the whole cluster every replica holds its last share
// and the sum stays within the limit; only a partial partition longer than the lease
// (one replica cut off, the others reclaiming its share) can exceed it, by the cut-off
// replicas' shares, until it heals. A replica that never had a share (joining) answers
// 503 UNAVAILABLE rather than guess; the runtime waits for the share before it serves.
import { isIP } from 'node:net';
import { getConnInfo } from '@hono/node-server/conninfo';
import type { KV } from '@nats-io/kv';
import type { Context, MiddlewareHandler } from 'hono';
import type { Principal } from '../auth.ts';
import type { Metrics } from '../metrics.ts';
import { createRateShare, type RateShare, type RateShareLog } from '../rate-share.ts';
import { HttpError } from './errors.ts';

/** The KV bucket the HTTP limiter's members heartbeat into (streams/KV_rate-limit-members.stream.json). */
export const RATE_LIMIT_MEMBERS_BUCKET = 'rate-limit-members';
/** A replica's share is counted in thousandths of every limit. */
export const SHARE_UNITS = 1000;

export type RateLimitConfig = {
  /** Per principal, requests per second summed over the cluster; 0 turns the limit off. */
  rps: number;
  /** Per principal, the most requests accepted at once (the bucket's size). */
  burst: number;
  /** Per client address for anonymous calls; 0 turns it off. */
  anonRps: number;
  anonBurst: number;
  /**
   * Proxies in front of this process whose X-Forwarded-For entries are believed: 0 (the
   * default) limits by the socket's address; 1 behind one ingress, which appends the address
   * it saw. Never more than the proxies really there, or a client picks its own key.
   */
  trustedProxies: number;
  /** Keys remembered per replica; beyond it the least recently used is forgotten. Default 100,000. */
  maxKeys?: number;
};

/** What fraction (0..1) of every limit this replica may spend now. */
export type ShareSource = { fraction(): number };

export type RateLimiterDeps = {
  share: ShareSource;
  metrics?: Pick<Metrics, 'rateLimitRejections'>;
  /** Milliseconds, monotonic. */
  now?: () => number;
};

type Bucket = { tokens: number; at: number };
type Kind = 'principal' | 'anonymous';

/**
 * Hono middleware for one replica's part of the cluster-wide limits; put it after the auth
 * middleware (it reads `c.get('principal')`; none means anonymous, limited by address).
 * `app.get('/api/orders/:id', requireAuth(verifier), deps.limit, handler)`
 */
export function createRateLimiter(deps: RateLimiterDeps, config: RateLimitConfig): MiddlewareHandler {
  const now = deps.now ?? (() => performance.now());
  const maxKeys = config.maxKeys ?? 100_000;
  // Insertion order is recency order (a touched key is moved to the end): the first is the least recently used.
  const buckets = new Map<string, Bucket>();

  return async (c, next) => {
    const principal = (c.get as (k: string) => Principal | undefined)('principal');
    const kind: Kind = principal ? 'principal' : 'anonymous';
    const [rps, burst] = principal ? [config.rps, config.burst] : [config.anonRps, config.anonBurst];
    if (!(rps > 0)) return await next();
    const key = principal ? `${principal.kind}:${principal.sub}` : `addr:${addressKey(clientAddress(c, config.trustedProxies))}`;

    const f = Math.min(1, deps.share.fraction());
    if (!(f > 0)) {
      c.header('Retry-After', '1');
      throw new HttpError(503, 'UNAVAILABLE', 'this replica has no share of the rate limits yet; retry shortly');
    }
    // Per millisecond; a bucket below one token would refuse everything, so at least one
    // (which can exceed the sum only when the burst is under the number of replicas).
    const rate = (rps * f) / 1000;
    const cap = Math.max(1, Math.max(burst, 1) * f);
    const t = now();
    let b = buckets.get(key);
    if (b) {
      b.tokens = Math.min(cap, b.tokens + (t - b.at) * rate);
      b.at = t;
      buckets.delete(key);
    } else {
      b = { tokens: cap, at: t };
      if (buckets.size >= maxKeys) buckets.delete(buckets.keys().next().value!);
    }
    buckets.set(key, b);

    const accepted = b.tokens >= 1;
    if (accepted) b.tokens -= 1;
    // Headers speak for the cluster: this replica's tokens scaled by its fraction (exact on
    // one replica; an estimate for a client whose requests are spread over several).
    const tokens = b.tokens / f;
    const headers = {
      'RateLimit-Limit': String(rps),
      'RateLimit-Remaining': String(accepted ? Math.max(0, Math.min(rps, Math.floor(tokens))) : 0),
      // Seconds until the whole burst is back.
      'RateLimit-Reset': String(Math.max(1, Math.ceil((Math.max(burst, 1) - tokens) / rps))),
      'RateLimit-Policy': `${rps};w=1;burst=${burst}`,
    };
    for (const [k, v] of Object.entries(headers)) c.header(k, v);
    if (!accepted) {
      deps.metrics?.rateLimitRejections.inc({ scope: kind });
      const retryAfterS = Math.max(1, Math.ceil((1 - b.tokens) / rate / 1000));
      c.header('Retry-After', String(retryAfterS));
      throw new HttpError(429, 'RATE_LIMITED', principal
        ? `too many requests for this principal (${rps}/s, burst ${burst}); retry in ${retryAfterS} s`
        : `too many requests from this address (${rps}/s, burst ${burst}); retry in ${retryAfterS} s`);
    }
    await next();
    // A handler that built its own Response dropped them; one that set its own (login's) keeps its own.
    if (!c.res.headers.has('RateLimit-Limit')) {
      try {
        for (const [k, v] of Object.entries(headers)) c.res.headers.set(k, v);
      } catch {
        // Immutable headers (a proxied Response): it goes out without them.
      }
    }
  };
}

/**
 * The client's address: the socket's, or with `trustedProxies` = n > 0 the entry the nth
 * proxy from us appended to X-Forwarded-For (entries further left are the client's to invent).
 */
export function clientAddress(c: Context, trustedProxies: number): string {
  let socket = 'unknown';
  try {
    socket = getConnInfo(c).remote.address ?? 'unknown';
  } catch {
    // Not served by @hono/node-server (app.request in a test): no socket to read.
  }
  if (trustedProxies <= 0) return socket;
  const chain = (c.req.header('x-forwarded-for') ?? '').split(',').map((s) => s.trim()).filter(Boolean);
  chain.push(socket);
  const picked = chain[Math.max(0, chain.length - 1 - trustedProxies)]!;
  return isIP(picked) ? picked : socket;
}

/** One key per IPv4 address, and per /64 for IPv6 (one subscriber's usual allocation: per address it is free to rotate). */
export function addressKey(address: string): string {
  const a = address.replace(/%.*$/, '');
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(a);
  if (mapped) return mapped[1]!;
  if (isIP(a) !== 6) return a;
  const [head, tail] = a.includes('::') ? a.split('::') as [string, string] : [a, undefined];
  const groups = (s: string | undefined) => (s ? s.split(':').flatMap((g) => (g.includes('.') ? ['0', '0'] : [g])) : []);
  const h = groups(head);
  const full = tail === undefined ? h : [...h, ...Array(8 - h.length - groups(tail).length).fill('0'), ...groups(tail)];
  return `${full.slice(0, 4).map((g) => parseInt(g, 16).toString(16)).join(':')}::/64`;
}

export type LimitShare = ShareSource & {
  start(): Promise<void>;
  stop(): Promise<void>;
  /** Resolves once this replica holds a share (or after `timeoutMs`, false). */
  ready(timeoutMs: number): Promise<boolean>;
  members(): number;
};

/**
 * This replica's fraction of every HTTP limit, as a member of `kv` (RATE_LIMIT_MEMBERS_BUCKET).
 * `const share = createLimitShare({ kv, memberId }); await share.start(); createRateLimiter({ share }, config)`
 */
export function createLimitShare(o: { kv: KV; memberId: string; heartbeatMs?: number; log?: RateShareLog }): LimitShare {
  const rs: RateShare = createRateShare({ kv: o.kv, memberId: o.memberId, totalRps: SHARE_UNITS, heartbeatMs: o.heartbeatMs, log: o.log, name: 'rate limit' });
  const fraction = () => {
    const live = rs.currentShare();
    if (live > 0) return live / SHARE_UNITS;
    // Cut off from NATS (or the heartbeat just after): keep what was agreed; see "Isolation" above.
    return rs.isolated() ? rs.heldShare() / SHARE_UNITS : 0;
  };
  return {
    fraction,
    start: () => rs.start(),
    stop: () => rs.stop(),
    members: () => rs.members(),
    async ready(timeoutMs) {
      const until = Date.now() + timeoutMs;
      while (!(fraction() > 0)) {
        if (Date.now() >= until) return false;
        await new Promise((r) => setTimeout(r, 50));
      }
      return true;
    },
  };
}
