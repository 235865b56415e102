import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from '@nats-io/transport-node';
import { AckPolicy, jetstreamManager } from '@nats-io/jetstream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from './log.ts';
import { diffConfig, provision, readSpecs, RETIRED_CONSUMERS, STREAMS_DIR } from './provision.ts';
import { startTestNats, type TestNats } from '../testing/index.ts';

let nats: TestNats;
beforeAll(async () => { nats = await startTestNats(); });
afterAll(async () => { await nats?.stop(); });
const log = createLogger({ level: 'silent' });

const dirWith = (files: Record<string, unknown>) => {
  const dir = mkdtempSync(join(tmpdir(), 'streams-'));
  for (const [f, v] of Object.entries(files)) writeFileSync(join(dir, f), JSON.stringify(v));
  return dir;
};

describe('provisioning from streams/', () => {
  it('creates every stream, consumer and KV bucket of the repository, idempotently, and they read back equal', async () => {
    const nc = await connect({ servers: nats.url });
    const jsm = await jetstreamManager(nc);
    await provision(jsm, STREAMS_DIR, log);
    await provision(jsm, STREAMS_DIR, log);
    const { streams, consumers } = readSpecs(STREAMS_DIR);
    for (const s of streams) expect(diffConfig(s.config, (await jsm.streams.info(s.config.name)).config as never)).toEqual([]);
    for (const c of consumers) expect((await jsm.consumers.info(c.stream, c.config.durable_name)).config.durable_name).toBe(c.config.durable_name);
    await nc.close();
  });

  it('deletes the durables a release retired, and leaves a consumer added by hand', async () => {
    const nc = await connect({ servers: nats.url });
    const jsm = await jetstreamManager(nc);
    await provision(jsm, STREAMS_DIR, log);
    for (const { stream, durable } of RETIRED_CONSUMERS) await jsm.consumers.add(stream, { durable_name: durable, ack_policy: AckPolicy.Explicit });
    await jsm.consumers.add('ORDERS', { durable_name: 'operator-tap', ack_policy: AckPolicy.Explicit });
    await provision(jsm, STREAMS_DIR, log);
    expect(RETIRED_CONSUMERS.length).toBeGreaterThan(0);
    for (const { stream, durable } of RETIRED_CONSUMERS) await expect(jsm.consumers.info(stream, durable)).rejects.toThrow(/not found/i);
    expect((await jsm.consumers.info('ORDERS', 'operator-tap')).config.durable_name).toBe('operator-tap');
    // A retired name that a file provisions again is a mistake in the release, not something to delete.
    await expect(provision(jsm, STREAMS_DIR, log, [{ stream: 'ORDERS', durable: 'saga' }])).rejects.toThrow(/both provisioned and retired/);
    await nc.close();
  });

  it('gives every stream the replicas asked for (NATS_STREAM_REPLICAS): a single server refuses 3, so the override reached it', async () => {
    const nc = await connect({ servers: nats.url });
    const jsm = await jetstreamManager(nc);
    const dir = dirWith({ 'REPLICATED.stream.json': { name: 'REPLICATED', subjects: ['replicated.>'], num_replicas: 1 } });
    await expect(provision(jsm, dir, log, [], { replicas: 3 })).rejects.toThrow(/replicas/i);
    await provision(jsm, dir, log, [], { replicas: 1 });
    expect((await jsm.streams.info('REPLICATED')).config.num_replicas).toBe(1);
    await nc.close();
  });

  it('fails loudly on a field the server dropped', async () => {
    const nc = await connect({ servers: nats.url });
    const jsm = await jetstreamManager(nc);
    // `allow_msg_ttl` (per-message TTL) arrived in nats-server 2.11; 2.9.10 drops it silently
    // (the client refuses some newer fields itself, but not this one).
    const dir = dirWith({ 'META.stream.json': { name: 'META', subjects: ['meta.>'], allow_msg_ttl: true } });
    await expect(provision(jsm, dir, log)).rejects.toThrow(/META.stream.json: allow_msg_ttl/);
    await nc.close();
  });

  it('rejects a misnamed file or a consumer of an unknown stream', () => {
    expect(() => readSpecs(dirWith({ 'A.stream.json': { name: 'B' } }))).toThrow(/name must be A/);
    expect(() => readSpecs(dirWith({ 'A.c.consumer.json': { durable_name: 'c' } }))).toThrow(/no stream A/);
    expect(() => readSpecs(dirWith({ 'x.json': {} }))).toThrow(/expected/);
  });
});
