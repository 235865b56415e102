// The kit's WebSockets: accepted through a Hono route, kept alive by ping/pong, a dead
// client's session cleaned up, every socket closed with 1001 at shutdown.
import type { AddressInfo } from 'node:net';
import { serve, type ServerType } from '@hono/node-server';
import { Hono } from 'hono';
import { afterEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { eventually } from '../testing/servers.ts';
import { acceptWebSocket, createWebSockets, type WebSockets } from './websocket.ts';

let server: ServerType | undefined;
let sockets: WebSockets | undefined;
afterEach(async () => {
  await sockets?.closeAll(100);
  await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
});

async function start(pingMs: number) {
  sockets = createWebSockets({ pingMs });
  const sessions = { open: 0, cleaned: 0 };
  const app = new Hono().get('/live', async (c) => await acceptWebSocket(c, (ws) => {
    sessions.open++;
    ws.send('hello');
    return () => { sessions.cleaned++; };
  }));
  server = await new Promise<ServerType>((resolve) => {
    const s = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1', websocket: { server: sockets!.server }, serverOptions: { shouldUpgradeCallback: sockets!.shouldUpgrade } }, () => resolve(s));
  });
  return { url: `ws://127.0.0.1:${(server.address() as AddressInfo).port}/live`, sessions };
}

const open = async (url: string, opts: WebSocket.ClientOptions = {}) => {
  const ws = new WebSocket(url, opts);
  const first = new Promise<string>((resolve, reject) => { ws.once('message', (d) => resolve(String(d))); ws.once('error', reject); });
  const closed = new Promise<number>((resolve) => ws.on('close', (code) => resolve(code)));
  return { ws, first: await first, closed };
};

describe('kit websockets', () => {
  it('terminates a client that stops answering pings and runs its cleanup; one that answers stays', async () => {
    const { url, sessions } = await start(100);
    const live = await open(url);
    const dead = await open(url, { autoPong: false });
    expect([live.first, dead.first]).toEqual(['hello', 'hello']);
    expect(await dead.closed).toBe(1006); // terminated: no close frame
    await eventually(() => sessions.cleaned === 1, { what: 'cleanup of the dead session' });
    await new Promise((r) => setTimeout(r, 400));
    expect(live.ws.readyState).toBe(WebSocket.OPEN);
    expect(sockets!.count()).toBe(1);
  });

  it('closes every socket with 1001 at shutdown', async () => {
    const { url, sessions } = await start(30_000);
    const a = await open(url);
    const b = await open(url);
    await sockets!.closeAll();
    expect([await a.closed, await b.closed]).toEqual([1001, 1001]);
    await eventually(() => sessions.cleaned === 2, { what: 'cleanups' });
  });
});
