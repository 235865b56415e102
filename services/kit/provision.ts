// Provisioning of streams, consumers and KV buckets from streams/*.json.
//
// The files are the JetStream API's own JSON (snake_case, nanosecond durations), so
// `nats stream add --config streams/X.stream.json` and
// `nats consumer add X --config streams/X.name.consumer.json` load them as they are.
// A KV bucket is a stream named KV_<bucket>, so it is provisioned the same way.
// nats-server 2.9 silently drops fields it does not know: every object is read back
// and compared with its file, and any difference fails start-up.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { JetStreamManager, StreamConfig, ConsumerConfig } from '@nats-io/jetstream';
import { ProvisioningError } from './errors.ts';
import type { Logger } from './log.ts';

export type StreamSpec = { file: string; config: Partial<StreamConfig> & { name: string } };
export type ConsumerSpec = { file: string; stream: string; config: Partial<ConsumerConfig> & { durable_name: string } };

export const STREAMS_DIR = new URL('../../streams/', import.meta.url).pathname;

/** Read every spec in a folder. `const specs = readSpecs(STREAMS_DIR)` */
export function readSpecs(dir: string): { streams: StreamSpec[]; consumers: ConsumerSpec[] } {
  const files = readdirSync(dir).filter((f) => f.endsWith('.json')).sort();
  const streams: StreamSpec[] = [];
  const consumers: ConsumerSpec[] = [];
  for (const file of files) {
    const config = JSON.parse(readFileSync(join(dir, file), 'utf8'));
    if (file.endsWith('.stream.json')) {
      if (config.name !== file.slice(0, -'.stream.json'.length)) throw new ProvisioningError(`${file}: name must be ${file.slice(0, -'.stream.json'.length)}`);
      streams.push({ file, config });
    } else if (file.endsWith('.consumer.json')) {
      const [stream, durable] = file.slice(0, -'.consumer.json'.length).split('.');
      if (config.durable_name !== durable) throw new ProvisioningError(`${file}: durable_name must be ${durable}`);
      consumers.push({ file, stream: stream!, config });
    } else {
      throw new ProvisioningError(`${file}: expected *.stream.json or *.consumer.json`);
    }
  }
  for (const c of consumers) {
    if (!streams.some((s) => s.config.name === c.stream)) throw new ProvisioningError(`${c.file}: no stream ${c.stream}`);
  }
  return { streams, consumers };
}

/** Fields of `want` whose value the server does not hold as written. */
export function diffConfig(want: Record<string, unknown>, got: Record<string, unknown>): string[] {
  const out: string[] = [];
  for (const [k, v] of Object.entries(want)) {
    if (JSON.stringify(normalize(v)) !== JSON.stringify(normalize(got[k]))) out.push(`${k}: want ${JSON.stringify(v)}, server has ${JSON.stringify(got[k])}`);
  }
  return out;
}

function normalize(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(normalize);
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).sort(([a], [b]) => a.localeCompare(b)).map(([k, x]) => [k, normalize(x)]));
  return v;
}

const isNotFound = (err: unknown) => /not found/i.test(String((err as Error)?.message));

/**
 * Durables that an earlier release provisioned and that nothing reads any more. Left on
 * the server they would count pending messages forever and confuse `nats consumer ls`,
 * so start-up deletes them. Only names listed here: a consumer an operator added by hand
 * is not ours to remove.
 */
export const RETIRED_CONSUMERS: readonly { stream: string; durable: string }[] = [
  // One notifications consumer per stream replaced the separate SMS ones (commit 8919d0e).
  { stream: 'ORDERS', durable: 'notifications-sms' },
  { stream: 'SAGA', durable: 'notifications-sms' },
  // funding's status cache is written by the outbox relay that publishes each status event.
  { stream: 'FUNDING', durable: 'funding-status' },
];

/**
 * Create or update every stream and consumer, delete retired ones, then verify. Idempotent.
 * `replicas` overrides every stream's num_replicas (production: 3, NATS_STREAM_REPLICAS); the files keep 1 for one server.
 * `await provision(jsm, STREAMS_DIR, log)`
 */
export async function provision(jsm: JetStreamManager, dir: string, log: Logger, retired = RETIRED_CONSUMERS, opts: { replicas?: number } = {}): Promise<void> {
  const specs = readSpecs(dir);
  const { consumers } = specs;
  const streams = opts.replicas ? specs.streams.map((s) => ({ ...s, config: { ...s.config, num_replicas: opts.replicas } })) : specs.streams;
  for (const { stream, durable } of retired) {
    if (consumers.some((c) => c.stream === stream && c.config.durable_name === durable)) throw new ProvisioningError(`${stream}.${durable} is both provisioned and retired`);
  }
  const problems: string[] = [];
  for (const { file, config } of streams) {
    try {
      await jsm.streams.info(config.name);
      await jsm.streams.update(config.name, config);
    } catch (err) {
      if (!isNotFound(err)) throw new ProvisioningError(`${file}: ${(err as Error).message}`, { cause: err });
      await jsm.streams.add(config);
      log.info({ stream: config.name }, 'stream created');
    }
    const fresh = await jsm.streams.info(config.name);
    for (const d of diffConfig(config, fresh.config as unknown as Record<string, unknown>)) problems.push(`${file}: ${d}`);
  }
  for (const { file, stream, config } of consumers) {
    try {
      await jsm.consumers.info(stream, config.durable_name);
      await jsm.consumers.update(stream, config.durable_name, config);
    } catch (err) {
      if (!isNotFound(err)) throw new ProvisioningError(`${file}: ${(err as Error).message}`, { cause: err });
      await jsm.consumers.add(stream, config);
      log.info({ stream, consumer: config.durable_name }, 'consumer created');
    }
    const fresh = await jsm.consumers.info(stream, config.durable_name);
    for (const d of diffConfig(config, fresh.config as unknown as Record<string, unknown>)) problems.push(`${file}: ${d}`);
  }
  for (const { stream, durable } of retired) {
    try {
      await jsm.consumers.delete(stream, durable);
      log.info({ stream, consumer: durable }, 'retired consumer deleted');
    } catch (err) {
      if (!isNotFound(err)) throw new ProvisioningError(`deleting retired consumer ${stream}.${durable}: ${(err as Error).message}`, { cause: err });
    }
  }
  if (problems.length) throw new ProvisioningError(`the server does not hold the configuration in streams/:\n  ${problems.join('\n  ')}`);
}
