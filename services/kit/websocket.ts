// WebSockets on the process's one HTTP server. @hono/node-server 2 upgrades through the
// Hono app itself: an upgrade request runs the app's middleware and routes like any GET,
// so a route answers it with a status (404, 400, 503: the upgrade is refused with that
// status) or accepts it with acceptWebSocket. No path registry of our own, and whatever
// guards the app's routes (auth) guards their WebSockets too.
//
// The kit owns the `ws` server: its keep-alive (a ping every interval; a socket that
// has not answered the previous one is dead and terminated, which is what fires the
// route's close handler when a client vanishes without a FIN), and closing every socket
// with 1001 when the process stops, since server.close() leaves upgraded sockets open.
import type { IncomingMessage } from 'node:http';
import type { Context } from 'hono';
import { upgradeWebSocket } from '@hono/node-server';
import { WebSocketServer, type WebSocket } from 'ws';
import { HttpError } from './http/errors.ts';

/** A WebSocket a route accepted: text frames out, and its end. */
export type LiveSocket = {
  send(text: string): void;
  /** Close with a code (1000: done) and a short reason. */
  close(code: number, reason?: string): void;
};

/** What an accepted socket's route does: on open, given the socket; returns its cleanup, run once when it closes. */
export type SocketSession = (socket: LiveSocket) => () => void;

export type WebSockets = {
  /** For serve({ websocket: { server } }). */
  server: WebSocketServer;
  /** Node's server option: only `Upgrade: websocket` takes the upgrade path; any other Upgrade is an ordinary request. */
  shouldUpgrade(req: IncomingMessage): boolean;
  /** Open sockets. */
  count(): number;
  /** Close every socket with 1001 (going away), terminating what has not closed after `graceMs`. */
  closeAll(graceMs?: number): Promise<void>;
};

const isUpgrade = (v: string | undefined) => v?.toLowerCase() === 'websocket';

/** The process's WebSocket server. `const sockets = createWebSockets({ pingMs: 30_000 }); serve({ fetch, websocket: { server: sockets.server } })` */
export function createWebSockets(opts: { pingMs?: number; maxPayloadBytes?: number } = {}): WebSockets {
  // Clients only listen here; a large frame from one is never legitimate.
  const server = new WebSocketServer({ noServer: true, maxPayload: opts.maxPayloadBytes ?? 64 * 1024, perMessageDeflate: false });
  const alive = new WeakMap<WebSocket, boolean>();
  server.on('connection', (ws) => {
    alive.set(ws, true);
    ws.on('pong', () => alive.set(ws, true));
    ws.on('error', () => ws.terminate());
  });
  const ping = setInterval(() => {
    for (const ws of server.clients) {
      if (!alive.get(ws)) { ws.terminate(); continue; }
      alive.set(ws, false);
      ws.ping();
    }
  }, opts.pingMs ?? 30_000);
  ping.unref();
  return {
    server,
    shouldUpgrade: (req) => isUpgrade(req.headers.upgrade),
    count: () => server.clients.size,
    async closeAll(graceMs = 1000) {
      clearInterval(ping);
      const open = [...server.clients];
      if (!open.length) return;
      const closed = Promise.all(open.map((ws) => new Promise<void>((resolve) => { ws.once('close', () => resolve()); ws.close(1001, 'server stopping'); })));
      const timer = setTimeout(() => { for (const ws of open) ws.terminate(); }, graceMs);
      await closed;
      clearTimeout(timer);
    },
  };
}

/**
 * Accept a WebSocket on a GET route, after the route has checked what it must (the
 * resource exists: throw notFound first, and the upgrade is refused with 404). A plain
 * GET without `Upgrade: websocket` gets 426. `return await acceptWebSocket(c, (ws) => { ws.send('hi'); return () => {} })`
 */
export async function acceptWebSocket(c: Context, session: SocketSession): Promise<Response> {
  if (!isUpgrade(c.req.header('upgrade'))) throw new HttpError(426, 'UPGRADE_REQUIRED', 'this endpoint speaks WebSocket: send Upgrade: websocket');
  let cleanup: (() => void) | undefined;
  const end = () => { const f = cleanup; cleanup = undefined; f?.(); };
  return await upgradeWebSocket(c, {
    onOpen(_event, ctx) {
      const ws = ctx.raw as WebSocket;
      const socket: LiveSocket = {
        send: (text) => { if (ws.readyState === ws.OPEN) ws.send(text); },
        close: (code, reason) => ws.close(code, reason),
      };
      cleanup = session(socket);
    },
    onClose: end,
    onError: end,
  });
}
