// The NATS connection: reconnects forever (an outage must not kill the process;
// the outbox holds events meanwhile) and logs its state changes.
import type { NatsConnection } from '@nats-io/transport-node';
import { NatsConnectionImpl, setTransportFactory } from '@nats-io/nats-core/internal';
import { nodeResolveHost } from '@nats-io/transport-node/lib/node_transport.js';
import { CoalescingTransport } from './nats-transport.ts';
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
  // transport-node's connect() with our transport: its factory is nats.js's one setting for
  // every connection of the process (a plain connect() elsewhere, as tests make, sets it back).
  setTransportFactory({ factory: () => new CoalescingTransport(), dnsResolveFn: nodeResolveHost });
  const nc: NatsConnection = await NatsConnectionImpl.connect({
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
