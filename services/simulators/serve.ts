// Shared by the simulators: serving a Hono app on a real port, and the seeded
// randomness and sleeps their fault knobs need.
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { serve } from '@hono/node-server';
import type { HttpBindings } from '@hono/node-server';

type FetchHandler = Parameters<typeof serve>[0]['fetch'];

export type ServedApp = {
  url: string;
  port: number;
  /** Stops listening and cuts open keep-alive and hanging connections, so it never waits on a client. */
  close(): Promise<void>;
};

/** Serves an app on loopback; port 0 picks a free one. `const { url, close } = await serveApp(app, { port: 0 })` */
export async function serveApp(
  app: { fetch: FetchHandler },
  options: { port?: number; hostname?: string } = {},
): Promise<ServedApp> {
  const hostname = options.hostname ?? '127.0.0.1';
  const server = await new Promise<Server>((resolve, reject) => {
    const s = serve({ fetch: app.fetch, port: options.port ?? 0, hostname }, () => resolve(s as Server)) as Server;
    s.once('error', reject);
  });
  const port = (server.address() as AddressInfo).port;
  let closing: Promise<void> | undefined;
  return {
    url: `http://${hostname}:${port}`,
    port,
    close() {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      return closing;
    },
  };
}

/** A seeded PRNG (mulberry32) in [0, 1), so fault knobs repeat run to run. `const rnd = createRandom(42); rnd()` */
export function createRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Resolves after ms; unref'd so a simulated hang never keeps a finished process alive. `await sleep(50)` */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}

export type LatencyMs = number | { min: number; max: number };

/** Draws one latency from a fixed value or a uniform range. `drawLatency({ min: 5, max: 20 }, rnd)` */
export function drawLatency(latency: LatencyMs, random: () => number): number {
  if (typeof latency === 'number') return latency;
  return latency.min + random() * (latency.max - latency.min);
}

/** A random 32-bit seed for when the caller gives none. `createRandom(randomSeed())` */
export function randomSeed(): number {
  return (Math.random() * 2 ** 32) >>> 0;
}

/** Thrown when there is no socket to destroy (app.request), so the caller's fetch rejects as on a cut connection. */
export class DroppedConnectionError extends Error {
  constructor() {
    super('connection dropped by the simulator');
    this.name = 'DroppedConnectionError';
  }
}

/**
 * Cuts the client's connection without an answer: destroys the raw socket under
 * @hono/node-server, or throws DroppedConnectionError in-process (the app's
 * onError must rethrow it). `return dropConnection(c.env)`
 */
export function dropConnection(env: unknown): Response {
  const socket = (env as Partial<HttpBindings> | undefined)?.incoming?.socket;
  if (!socket) throw new DroppedConnectionError();
  socket.destroy();
  // Never reaches the client; the adapter only needs something to discard.
  return new Response(null, { status: 204 });
}
