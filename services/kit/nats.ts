// The NATS connection: reconnects forever (an outage must not kill the process;
// the outbox holds events meanwhile) and logs its state changes.
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager } from '@nats-io/jetstream';
import type { Logger } from './log.ts';

export type Nats = { nc: NatsConnection; js: JetStreamClient; jsm: JetStreamManager };

/** Headers the kit sets on every message it publishes. */
export const H = {
  msgId: 'Nats-Msg-Id',
  /** Stable logical id (outbox id); survives a DLQ redrive, which needs a fresh Nats-Msg-Id. */
  logicalId: 'Orderflow-Msg-Id',
  requestId: 'X-Request-Id',
} as const;

/** Connect with endless reconnect. `const { nc, js, jsm } = await connectNats(config.NATS_URL, log)` */
export async function connectNats(servers: string, log: Logger, name = 'orderflow'): Promise<Nats> {
  const nc = await connect({
    servers: servers.split(','),
    name,
    maxReconnectAttempts: -1,
    reconnectTimeWait: 500,
    reconnectJitter: 200,
    waitOnFirstConnect: true,
    pingInterval: 10_000,
    // Otherwise every request (each JetStream publish) builds an Error up front for its
    // stack trace: measurable CPU on the relay's hot path.
    noAsyncTraces: true,
  });
  void (async () => {
    for await (const s of nc.status()) {
      if (s.type === 'disconnect' || s.type === 'reconnect' || s.type === 'error') log.warn({ nats: s.type, server: 'server' in s ? s.server : undefined }, 'nats connection state');
    }
  })().catch(() => {});
  const js = jetstream(nc, { timeout: 10_000 });
  const jsm = await jetstreamManager(nc, { timeout: 10_000 });
  return { nc, js, jsm };
}
