import { Kvm, type KV } from '@nats-io/kv';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { ProviderEvents } from '@openfeature/server-sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  bucketOf, FlagConflictError, FLAGS_BUCKET, openFlagStore, startFlags, variantOf, type Flags, type FlagSpec, type StoredFlag,
} from './flags.ts';
import { createRandom } from '../simulators/serve.ts';
import { createLogger } from './log.ts';
import { provision, STREAMS_DIR } from './provision.ts';
import { eventually, startTestNats, type TestNats } from '../testing/servers.ts';

const log = createLogger({ level: 'silent' });

// Seeded PRNG (the simulators' mulberry32): the same cases every run, and a failure names its seed.
const rng = createRandom;
const randomKey = (r: () => number) => {
  const len = 1 + Math.floor(r() * 24);
  let s = '';
  for (let i = 0; i < len; i++) s += String.fromCharCode(32 + Math.floor(r() * 0x2000));
  return s;
};
const spec = (rolloutPercent: number, enabled = true): FlagSpec => ({ enabled, rolloutPercent, variants: { off: 'v1', on: 'v2' } });

describe('sticky percentage rollout (property)', () => {
  it('the same key always gets the same variant, and raising the percentage never moves a key from on to off', () => {
    const r = rng(20261201);
    for (let k = 0; k < 2000; k++) {
      const flagKey = `flag.${Math.floor(r() * 5)}`;
      const key = randomKey(r);
      // An increasing sequence of percentages, fractional ones included.
      const steps = Array.from({ length: 12 }, () => Math.round(r() * 10_000) / 100).sort((a, b) => a - b);
      let wasOn = false;
      for (const p of [0, ...steps, 100]) {
        const v = variantOf(spec(p), flagKey, key);
        expect(variantOf(spec(p), flagKey, key), `same answer twice for ${JSON.stringify(key)} at ${p}%`).toBe(v);
        if (wasOn) expect(v, `${JSON.stringify(key)} of ${flagKey} moved out when the rollout rose to ${p}%`).toBe('on');
        wasOn = v === 'on';
      }
      expect(wasOn).toBe(true); // 100% is everyone
      expect(variantOf(spec(100, false), flagKey, key)).toBe('off'); // disabled is no one
    }
  });

  it('the bucket is a pure function of (flag, key): independent of call order and process state', () => {
    const r = rng(7);
    const keys = Array.from({ length: 500 }, () => randomKey(r));
    const first = keys.map((k) => bucketOf('funding.riskModel', k));
    const again = [...keys].reverse().map((k) => bucketOf('funding.riskModel', k)).reverse();
    expect(again).toEqual(first);
    for (const b of first) expect(b >= 0 && b < 10_000 && Number.isInteger(b)).toBe(true);
    // Pinned values: a change of hash would silently re-bucket every business mid-rollout.
    expect([bucketOf('funding.riskModel', 'biz-42'), bucketOf('funding.riskModel', 'biz-43'), bucketOf('other.flag', 'biz-42')]).toEqual(PINNED);
  });

  it('the share of keys that get `on` approximates the percentage over 20k keys', () => {
    const r = rng(99);
    const keys = Array.from({ length: 20_000 }, (_, i) => `biz-${i}-${Math.floor(r() * 1e9)}`);
    for (const p of [1, 5, 10, 25, 33.33, 50, 90]) {
      const on = keys.filter((k) => variantOf(spec(p), 'funding.riskModel', k) === 'on').length / keys.length;
      // Binomial sd at n=20k is at most 0.35 percentage points; 1.5 points is > 4 sd.
      expect(Math.abs(on * 100 - p), `share at ${p}%`).toBeLessThan(1.5);
    }
  });

  it('two flags at the same percentage do not pick the same keys', () => {
    const keys = Array.from({ length: 20_000 }, (_, i) => `biz-${i}`);
    const a = new Set(keys.filter((k) => variantOf(spec(10), 'flag.a', k) === 'on'));
    const both = keys.filter((k) => a.has(k) && variantOf(spec(10), 'flag.b', k) === 'on').length;
    expect(both / keys.length).toBeLessThan(0.02); // independent: ~1%; the same hash would give 10%
  });

  it('a rollout strictly between 0 and 100% needs a targeting key; 0%, 100% and disabled do not', () => {
    expect(variantOf(spec(50), 'f', undefined)).toBeUndefined();
    expect(variantOf(spec(0), 'f', undefined)).toBe('off');
    expect(variantOf(spec(100), 'f', undefined)).toBe('on');
    expect(variantOf(spec(50, false), 'f', undefined)).toBe('off');
  });
});

// sha256("funding.riskModel\0biz-42") etc., first 4 bytes big-endian, mod 10,000 (computed independently with node -e).
const PINNED = [7461, 504, 4932];

describe('NATS KV provider', () => {
  let nats: TestNats;
  let nc: NatsConnection;
  let kv: KV;
  const started: Flags[] = [];
  beforeAll(async () => {
    nats = await startTestNats();
    nc = await connect({ servers: nats.url });
    await provision(await jetstreamManager(nc), STREAMS_DIR, log);
    kv = await new Kvm(nc).open(FLAGS_BUCKET);
  });
  afterAll(async () => {
    for (const f of started) await f.stop();
    await nc?.close();
    await nats?.stop();
  });

  const stored = (key: string, s: FlagSpec): StoredFlag => ({ key, ...s, updatedAt: new Date().toISOString(), updatedBy: 'test' });
  const replica = async (seeds: Parameters<typeof startFlags>[0]['seeds'] = []) => {
    // Each replica has a connection of its own, as a separate process would.
    const own = await connect({ servers: nats.url });
    const flags = await startFlags({ kv: await new Kvm(own).open(FLAGS_BUCKET), log, seeds });
    started.push({ ...flags, stop: async () => { await flags.stop(); await own.close(); } });
    return flags;
  };

  it('seeds a missing flag, never overwrites an existing one, and evaluates from memory', async () => {
    const a = await replica([{ key: 'seed.one', ...spec(0, false) }]);
    expect(await a.client.getStringValue('seed.one', 'dflt', { targetingKey: 'biz-1' })).toBe('v1');
    await a.store.compareAndSet('seed.one', stored('seed.one', spec(100)), a.store.get('seed.one')!.revision);
    const b = await replica([{ key: 'seed.one', ...spec(0, false) }]);
    expect(b.store.get('seed.one')?.rolloutPercent).toBe(100);
    expect(await b.client.getStringValue('seed.one', 'dflt', { targetingKey: 'biz-1' })).toBe('v2');
    const details = await b.client.getStringDetails('no.such.flag', 'dflt', { targetingKey: 'biz-1' });
    expect(details).toMatchObject({ value: 'dflt', errorCode: 'FLAG_NOT_FOUND' });
  });

  it('a change written through one replica is evaluated by another within 2 s, and it emits ConfigurationChanged', async () => {
    const a = await replica();
    const b = await replica();
    const changed: string[][] = [];
    b.client.addHandler(ProviderEvents.ConfigurationChanged, (e) => { changed.push(e?.flagsChanged ?? []); });
    await a.store.compareAndSet('two.replicas', stored('two.replicas', spec(0)), 0);
    await eventually(async () => (await b.client.getStringValue('two.replicas', 'dflt', { targetingKey: 'biz-7' })) === 'v1', { timeoutMs: 2000, intervalMs: 20, what: 'replica b sees the flag' });
    const rev = a.store.get('two.replicas')!.revision;
    await a.store.compareAndSet('two.replicas', stored('two.replicas', spec(100)), rev);
    await eventually(async () => (await b.client.getStringValue('two.replicas', 'dflt', { targetingKey: 'biz-7' })) === 'v2', { timeoutMs: 2000, intervalMs: 20, what: 'replica b sees the rollout' });
    await eventually(() => changed.some((k) => k.includes('two.replicas')), { timeoutMs: 2000, what: 'ConfigurationChanged' });
    // A deletion reaches the other replica too: its evaluation falls back to the default.
    await kv.delete('two.replicas');
    await eventually(async () => (await b.client.getStringValue('two.replicas', 'dflt', { targetingKey: 'biz-7' })) === 'dflt', { timeoutMs: 2000, intervalMs: 20, what: 'replica b sees the deletion' });
  });

  it('compare-and-set: a write against a stale revision loses with FlagConflictError', async () => {
    const store = await openFlagStore(kv, log);
    try {
      const r1 = await store.compareAndSet('cas.flag', stored('cas.flag', spec(10)), 0);
      await expect(store.compareAndSet('cas.flag', stored('cas.flag', spec(20)), 0)).rejects.toBeInstanceOf(FlagConflictError);
      const r2 = await store.compareAndSet('cas.flag', stored('cas.flag', spec(30)), r1);
      await expect(store.compareAndSet('cas.flag', stored('cas.flag', spec(40)), r1)).rejects.toBeInstanceOf(FlagConflictError);
      expect((await store.read('cas.flag'))).toMatchObject({ revision: r2, flag: { rolloutPercent: 30 } });
    } finally {
      await store.stop();
    }
  });

  it('an unreadable definition in the bucket is ignored (the last good one stays), never thrown at an evaluation', async () => {
    const a = await replica();
    await a.store.compareAndSet('bad.flag', stored('bad.flag', spec(100)), 0);
    await kv.put('bad.flag', JSON.stringify({ enabled: 'yes' }));
    await kv.put('bad.flag.marker', JSON.stringify(stored('bad.flag.marker', spec(0))));
    await eventually(() => a.store.get('bad.flag.marker'), { timeoutMs: 2000, what: 'marker' });
    expect(await a.client.getStringValue('bad.flag', 'dflt', { targetingKey: 'x' })).toBe('v2');
  });
});
