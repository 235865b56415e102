// Feature flags (CONTRACTS.md "Feature flags"): definitions live in the NATS KV bucket
// `feature-flags`, one key per flag; every process watches the bucket and keeps the
// definitions in memory, so an evaluation never does I/O and a change reaches every
// replica as fast as the watch delivers it (milliseconds; the contract allows 2 s).
// Services evaluate through an OpenFeature client (the provider below); the admin API
// writes through the store's compare-and-set, so a write never replaces a definition it
// did not read (its audit entry's `before` is exactly what it replaced).
//
// Rollouts are sticky: a targeting key's bucket is a hash of (flag key, targeting key)
// in 0..9999, and the key gets `on` iff the flag is enabled and bucket < rolloutPercent
// × 100. The bucket never changes, so the same key always gets the same variant, and a
// larger percentage only adds buckets: nobody is moved out by raising it. The flag key
// is part of the hash so that two rollouts at 10% do not pick the same businesses.
import { createHash, randomUUID } from 'node:crypto';
import type { KV, KvEntry } from '@nats-io/kv';
import {
  ErrorCode, NOOP_PROVIDER, OpenFeature, OpenFeatureEventEmitter, ProviderEvents, StandardResolutionReasons,
  type Client, type EvaluationContext, type JsonValue, type Provider, type ResolutionDetails,
} from '@openfeature/server-sdk';
import { z } from 'zod';
import type { Logger } from './log.ts';

export const FLAGS_BUCKET = 'feature-flags';

/** Dot-separated segments of letters, digits, `_` and `-` (a valid KV key): `funding.riskModel`. */
export const FlagKey = z.string().min(1).max(128)
  .regex(/^[A-Za-z0-9][A-Za-z0-9_-]*(\.[A-Za-z0-9][A-Za-z0-9_-]*)*$/, 'dot-separated segments of letters, digits, _ and -, e.g. funding.riskModel');

const variantValue = z.string().min(1).max(200);

/** What a client sends in `PUT /api/admin/flags/{key}`. */
export const FlagSpec = z.object({
  enabled: z.boolean(),
  rolloutPercent: z.number().min(0).max(100),
  variants: z.object({ off: variantValue, on: variantValue }).strict(),
  description: z.string().max(500).optional(),
}).strict();
export type FlagSpec = z.infer<typeof FlagSpec>;

/** A definition as stored in KV. */
const StoredFlag = FlagSpec.extend({ key: FlagKey, updatedAt: z.string(), updatedBy: z.string() });
export type StoredFlag = z.infer<typeof StoredFlag>;

/** A definition as the store holds it: with the KV revision that wrote it. */
export type Flag = StoredFlag & { revision: number };

/** A flag a module evaluates, with the definition it starts with when the bucket has none. */
export type FlagSeed = FlagSpec & { key: string };

export type Variant = 'on' | 'off';

/**
 * The sticky bucket of a targeting key in a flag, 0..9999. SHA-256 from node:crypto: stable
 * across processes, releases and Node versions (a bucket must never move), uniform enough
 * that any 1% of buckets holds ~1% of keys, and ~1 µs per call, nothing next to a scoring.
 * The first 32 bits modulo 10,000 are biased by under 10^-5, far below what a rollout notices.
 * `bucketOf('funding.riskModel', 'biz-42') // 0..9999`
 */
export function bucketOf(flagKey: string, targetingKey: string): number {
  return createHash('sha256').update(flagKey).update('\0').update(targetingKey).digest().readUInt32BE(0) % 10_000;
}

/**
 * The variant a targeting key gets; undefined when the answer depends on a key that is missing.
 * `variantOf(flag, 'funding.riskModel', 'biz-42') // 'on' | 'off'`
 */
export function variantOf(flag: FlagSpec, flagKey: string, targetingKey: string | undefined): Variant | undefined {
  const threshold = Math.round(flag.rolloutPercent * 100);
  if (!flag.enabled || threshold <= 0) return 'off';
  if (threshold >= 10_000) return 'on';
  if (!targetingKey) return undefined;
  return bucketOf(flagKey, targetingKey) < threshold ? 'on' : 'off';
}

/** A compare-and-set lost: the flag changed since it was read. Read again and retry. */
export class FlagConflictError extends Error {
  override name = 'FlagConflictError';
}

export type FlagStore = {
  /** From memory. */
  get(key: string): Flag | undefined;
  /** From memory, sorted by key. */
  list(): Flag[];
  /** From the server (for a compare-and-set): the definition and its revision, or null and 0. */
  read(key: string): Promise<{ flag: Flag | null; revision: number }>;
  /**
   * Write `flag` if the key is still at `revision` (0: absent); returns the new revision and
   * holds the definition in memory at once (read-your-write). FlagConflictError otherwise.
   */
  compareAndSet(key: string, flag: StoredFlag, revision: number): Promise<number>;
  /** Called with the keys whose definition changed (from any replica). */
  onChange(fn: (keys: string[]) => void): void;
  stop(): Promise<void>;
};

const isCasLoss = (err: unknown) => /wrong last sequence|key exists/i.test(String((err as Error)?.message));

/**
 * Load the bucket and keep watching it. `const store = await openFlagStore(await kvm.open(FLAGS_BUCKET), log)`
 */
export async function openFlagStore(kv: KV, log: Logger): Promise<FlagStore> {
  const flags = new Map<string, Flag>();
  // Highest revision applied per key, deletions included, so a late watch delivery never undoes a newer state.
  const seen = new Map<string, number>();
  const listeners: ((keys: string[]) => void)[] = [];
  const parse = (e: KvEntry): Flag | null => {
    try {
      return { ...StoredFlag.parse(e.json()), revision: e.revision };
    } catch (err) {
      log.warn({ err: String(err), flag: e.key, revision: e.revision }, 'feature flag definition unreadable; keeping the previous one');
      return null;
    }
  };
  const apply = (e: KvEntry): boolean => {
    if ((seen.get(e.key) ?? 0) >= e.revision) return false;
    seen.set(e.key, e.revision);
    if (e.operation !== 'PUT') return flags.delete(e.key);
    const f = parse(e);
    if (!f) return false;
    flags.set(e.key, f);
    return true;
  };
  const notify = (keys: string[]) => {
    for (const fn of listeners) {
      try { fn(keys); } catch (err) { log.warn({ err: String(err) }, 'feature flag listener failed'); }
    }
  };

  // Watch first, then read the snapshot: a change between the two arrives by the watch,
  // and the revision guard makes applying an entry twice harmless.
  const watch = await kv.watch();
  const watching = (async () => {
    for await (const e of watch) if (apply(e)) notify([e.key]);
  })().catch((err) => log.error({ err: String(err) }, 'feature flag watch ended'));
  for await (const key of await kv.keys()) {
    const e = await kv.get(key);
    if (e) apply(e);
  }

  return {
    get: (key) => flags.get(key),
    list: () => [...flags.values()].sort((a, b) => a.key.localeCompare(b.key)),
    async read(key) {
      const e = await kv.get(key);
      // A deleted key reads as absent: kv.create takes over its deletion marker.
      if (!e || e.operation !== 'PUT') return { flag: null, revision: 0 };
      return { flag: parse(e), revision: e.revision };
    },
    async compareAndSet(key, flag, revision) {
      const body = JSON.stringify(StoredFlag.parse(flag));
      let rev: number;
      try {
        rev = revision ? await kv.update(key, body, revision) : await kv.create(key, body);
      } catch (err) {
        if (isCasLoss(err)) throw new FlagConflictError(`flag ${key} changed since revision ${revision}`, { cause: err });
        throw err;
      }
      if ((seen.get(key) ?? 0) < rev) {
        seen.set(key, rev);
        flags.set(key, { ...flag, revision: rev });
        notify([key]);
      }
      return rev;
    },
    onChange: (fn) => { listeners.push(fn); },
    async stop() {
      watch.stop();
      await watching;
    },
  };
}

/**
 * Create each seeded flag the bucket does not hold yet (a definition an operator changed is
 * never overwritten; replicas starting together race harmlessly: one create wins).
 * `await seedFlags(kv, [riskModelFlag])`
 */
export async function seedFlags(kv: KV, seeds: FlagSeed[], by = 'provisioning'): Promise<string[]> {
  const created: string[] = [];
  for (const { key, ...spec } of seeds) {
    const flag: StoredFlag = { ...FlagSpec.parse(spec), key: FlagKey.parse(key), updatedAt: new Date().toISOString(), updatedBy: by };
    try {
      await kv.create(key, JSON.stringify(flag));
      created.push(key);
    } catch (err) {
      if (!isCasLoss(err)) throw err;
    }
  }
  return created;
}

const details = <T>(value: T, variant: Variant, flag: Flag): ResolutionDetails<T> => ({
  value, variant,
  reason: !flag.enabled ? StandardResolutionReasons.DISABLED : flag.rolloutPercent > 0 && flag.rolloutPercent < 100 ? StandardResolutionReasons.SPLIT : StandardResolutionReasons.STATIC,
  flagMetadata: { revision: flag.revision },
});

const failed = <T>(value: T, errorCode: ErrorCode, errorMessage: string): ResolutionDetails<T> =>
  ({ value, reason: StandardResolutionReasons.ERROR, errorCode, errorMessage });

/**
 * An OpenFeature provider over a FlagStore. A string evaluation answers the variant's value
 * (e.g. a model version); a boolean one whether the key is in the `on` group.
 * `await OpenFeature.setProviderAndWait(domain, createFlagProvider(store))`
 */
export function createFlagProvider(store: FlagStore): Provider {
  const events = new OpenFeatureEventEmitter();
  store.onChange((keys) => events.emit(ProviderEvents.ConfigurationChanged, { flagsChanged: keys }));
  const resolve = <T>(flagKey: string, defaultValue: T, context: EvaluationContext, value: (v: Variant, f: Flag) => T | undefined): ResolutionDetails<T> => {
    const flag = store.get(flagKey);
    if (!flag) return failed(defaultValue, ErrorCode.FLAG_NOT_FOUND, `no feature flag ${flagKey}`);
    const variant = variantOf(flag, flagKey, context.targetingKey);
    if (!variant) return failed(defaultValue, ErrorCode.TARGETING_KEY_MISSING, `flag ${flagKey} is rolled out by percentage and needs a targetingKey`);
    const v = value(variant, flag);
    if (v === undefined) return failed(defaultValue, ErrorCode.TYPE_MISMATCH, `flag ${flagKey}: variant ${variant} is not of the requested type`);
    return details(v, variant, flag);
  };
  return {
    metadata: { name: 'orderflow-nats-kv' },
    runsOn: 'server',
    events,
    // Evaluation is synchronous in memory; the interface wants promises.
    resolveBooleanEvaluation: async (key, def, ctx) => resolve(key, def, ctx, (v) => v === 'on'),
    resolveStringEvaluation: async (key, def, ctx) => resolve(key, def, ctx, (v, f) => f.variants[v]),
    resolveNumberEvaluation: async (key, def, ctx) => resolve(key, def, ctx, (v, f) => {
      const n = Number(f.variants[v]);
      return f.variants[v].trim() && Number.isFinite(n) ? n : undefined;
    }),
    resolveObjectEvaluation: async <T extends JsonValue>(key: string, def: T, ctx: EvaluationContext) => resolve<T>(key, def, ctx, (v, f) => {
      try { return JSON.parse(f.variants[v]) as T; } catch { return undefined; }
    }),
  };
}

export type Flags = {
  /** Evaluate: `await flags.client.getStringValue('funding.riskModel', MODEL_VERSION, { targetingKey: businessId })`. */
  client: Client;
  store: FlagStore;
  stop(): Promise<void>;
};

/**
 * The process's flags: seed, load, watch, and an OpenFeature client bound to them.
 * OpenFeature's API object is a process-wide singleton; this is the one place that touches
 * it, and it binds the provider to a domain of its own (a fresh id per call) rather than to
 * the default provider, so two runtimes in one process (tests) each evaluate their own
 * cluster's flags. Services get `flags.client` as a dependency and never reach for the global.
 * `const flags = await startFlags({ kv: await kvm.open(FLAGS_BUCKET), log, seeds })`
 */
export async function startFlags({ kv, log, seeds = [] }: { kv: KV; log: Logger; seeds?: FlagSeed[] }): Promise<Flags> {
  const dup = seeds.map((s) => s.key).find((k, i, all) => all.indexOf(k) !== i);
  if (dup) throw new Error(`feature flag ${dup} is seeded twice`);
  const created = await seedFlags(kv, seeds);
  if (created.length) log.info({ flags: created }, 'feature flags created with their defaults');
  const store = await openFlagStore(kv, log);
  const domain = `orderflow-flags-${randomUUID()}`;
  await OpenFeature.setProviderAndWait(domain, createFlagProvider(store));
  return {
    client: OpenFeature.getClient(domain),
    store,
    async stop() {
      await OpenFeature.setProviderAndWait(domain, NOOP_PROVIDER);
      await store.stop();
    },
  };
}
