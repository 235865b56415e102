// The gateway's reverse proxy: a request goes to the target that owns its path, over a
// kept-alive connection pool per upstream (node:http Agent), with its body and the answer
// streamed both ways (an SSE stream flows through as the upstream writes it). An upstream
// that cannot be reached, or does not answer in time, is the contract's 503 UNAVAILABLE.
import { Agent, request, type IncomingHttpHeaders, type IncomingMessage } from 'node:http';
import { Readable } from 'node:stream';
import type { Context } from 'hono';
import { WebSocket } from 'ws';
import { acceptWebSocket, errorBody, type Logger, type Metrics } from '../kit/index.ts';

/** Answers up to this size (declared by Content-Length) are buffered rather than streamed. */
const BUFFERED_ANSWER_BYTES = 1 << 20;

/**
 * The request's body as a Node stream: the server's own IncomingMessage where no middleware
 * has touched the body (the kit's body limit reads only Content-Length when there is one),
 * which spares a web stream and its conversion back for every request; else the web body.
 */
function requestBody(c: Context): Readable {
  const incoming = (c.env as { incoming?: IncomingMessage } | undefined)?.incoming;
  if (incoming && !c.req.raw.bodyUsed && incoming.readableFlowing === null && !incoming.readableEnded) return incoming;
  return Readable.fromWeb(c.req.raw.body as never);
}

/** Hop-by-hop headers (RFC 9110 §7.6.1) and the ones the proxy sets itself. */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-authenticate', 'proxy-authorization', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'host']);

/** The upstream request was destroyed because the client went away (c.req.raw.signal aborted). */
class ClientGoneError extends Error {
  readonly code = 'ECLIENTGONE';
  constructor() { super('the client closed the request'); }
}
/** nginx's status for a request whose client went away before the answer; never sent to anyone. */
const CLIENT_CLOSED_REQUEST = 499;

export type Upstream = { target: string; url: URL };
export type ProxyOptions = {
  /** Pool size per upstream; requests beyond it queue for a socket. */
  maxSockets: number;
  /** Time from sending the request to the upstream's response headers (SSE bodies may then last forever). */
  responseTimeoutMs: number;
  /** An idle pooled socket is closed after this; keep it below the upstreams' keep-alive timeout (Node: 5 s) so we never reuse one they are closing. */
  idleSocketMs: number;
  /**
   * Requests forwarded to one upstream and not yet answered; beyond it, 503 at once. So a target
   * that hangs (its requests held until responseTimeoutMs) holds at most this many of the
   * gateway's admission slots (kit/http/admission.ts), and the other targets keep being served.
   */
  maxInflightPerUpstream?: number;
  log: Logger;
  metrics?: Pick<Metrics, 'httpShed'>;
};

export type Proxy = {
  forward(c: Context, upstream: Upstream): Promise<Response>;
  /**
   * An `Upgrade: websocket` request: the upstream's socket is opened first, so its refusal (404,
   * 401, 400) is the client's; once it opens, the client's is accepted and the upstream's text
   * frames and close code are relayed (the live feeds only push; the client only listens).
   */
  websocket(c: Context, upstream: Upstream): Promise<Response>;
  /** Sockets open toward each upstream (in use and idle), for tests and metrics. */
  sockets(): Record<string, number>;
  close(): void;
};

/** `const proxy = createProxy({ maxSockets: 256, responseTimeoutMs: 30_000, idleSocketMs: 4000, log })` */
export function createProxy(o: ProxyOptions): Proxy {
  // One agent per upstream, so one slow target cannot take the sockets of another.
  const agents = new Map<string, Agent>();
  const agentFor = (u: Upstream) => {
    let a = agents.get(u.target);
    if (!a) {
      a = new Agent({ keepAlive: true, maxSockets: o.maxSockets, maxFreeSockets: o.maxSockets, timeout: o.idleSocketMs, scheduling: 'lifo' });
      agents.set(u.target, a);
    }
    return a;
  };

  const send = (c: Context, u: Upstream, body: Readable | undefined) => new Promise<IncomingMessage>((resolve, reject) => {
    // Gone already (say, while this request waited for the retry): nobody to send the answer to.
    if (c.req.raw.signal.aborted) { reject(new ClientGoneError()); return; }
    const incoming = new URL(c.req.url);
    const headers: Record<string, string | string[]> = {};
    for (const [k, v] of c.req.raw.headers) if (!HOP_BY_HOP.has(k)) headers[k] = v;
    // The id the gateway logged is the one the service logs: one request, one id.
    headers['x-request-id'] = c.get('requestId') as string;
    const client = (c.env as { incoming?: { socket?: { remoteAddress?: string } } } | undefined)?.incoming?.socket?.remoteAddress;
    const forwarded = c.req.header('x-forwarded-for');
    if (client) headers['x-forwarded-for'] = forwarded ? `${forwarded}, ${client}` : client;
    headers['x-forwarded-host'] ??= incoming.host;
    headers['x-forwarded-proto'] ??= incoming.protocol.replace(':', '');
    const req = request({
      agent: agentFor(u), protocol: u.url.protocol, hostname: u.url.hostname, port: u.url.port || 80,
      method: c.req.method, path: `${u.url.pathname.replace(/\/$/, '')}${incoming.pathname}${incoming.search}`, headers,
    });
    const timer = setTimeout(() => req.destroy(Object.assign(new Error(`no answer in ${o.responseTimeoutMs} ms`), { code: 'ETIMEDOUT' })), o.responseTimeoutMs);
    req.once('response', (res) => { clearTimeout(timer); resolve(res); });
    req.once('error', (err) => { clearTimeout(timer); reject(err); });
    // The client went away: stop the upstream work (and free the socket) rather than stream into
    // nothing. Destroyed with an error of our own, so it is not taken for the upstream's ECONNRESET.
    c.req.raw.signal.addEventListener('abort', () => req.destroy(new ClientGoneError()), { once: true });
    if (body) body.pipe(req);
    else req.end();
  });

  const unavailable = (c: Context, u: Upstream, err: unknown) => {
    // Our own destroy of the upstream request (or of its answer) after the client left is no
    // failure of the upstream: a debug line, and 499 (nginx's "client closed request", which no
    // client sees) so the request metrics and traces do not count it among the 5xx.
    if (err instanceof ClientGoneError || c.req.raw.signal.aborted) {
      (c.get('log') as Logger | undefined)?.debug({ upstream: u.target, code: (err as NodeJS.ErrnoException).code, err: String(err) }, 'gateway: client went away; upstream request abandoned');
      return new Response(null, { status: CLIENT_CLOSED_REQUEST });
    }
    (c.get('log') as Logger | undefined)?.warn({ upstream: u.target, code: (err as NodeJS.ErrnoException).code, err: String(err) }, 'gateway: upstream unavailable');
    return c.json(errorBody('UNAVAILABLE', `the ${u.target} service is unavailable; try again shortly`), 503, { 'Retry-After': '1' });
  };

  // Requests in flight per upstream, for maxInflightPerUpstream.
  const inflight = new Map<string, number>();

  return {
    async websocket(c, u) {
      const incoming = new URL(c.req.url);
      const target = new URL(`${u.url.pathname.replace(/\/$/, '')}${incoming.pathname}${incoming.search}`, u.url);
      target.protocol = u.url.protocol === 'https:' ? 'wss:' : 'ws:';
      const headers: Record<string, string> = { 'x-request-id': c.get('requestId') as string };
      for (const h of ['authorization', 'traceparent', 'tracestate', 'origin']) { const v = c.req.header(h); if (v) headers[h] = v; }
      const upstream = new WebSocket(target, { headers, perMessageDeflate: false, handshakeTimeout: o.responseTimeoutMs });
      // The upstream speaks at once (the current status), often in the same packet as its 101:
      // ws emits that frame right after 'open', before an await on 'open' resumes, so the frames
      // are caught from the start and held until the client's socket is open.
      let out: ((text: string) => void) | undefined;
      let end: ((code: number) => void) | undefined;
      const held: string[] = [];
      let closedWith: number | undefined;
      const closeCode = (code: number) => (code === 1005 || code === 1006 ? 1011 : code);
      upstream.on('message', (data) => { const text = data.toString(); if (out) out(text); else held.push(text); });
      upstream.on('close', (code) => { closedWith = closeCode(code); end?.(closedWith); });
      upstream.on('error', () => { closedWith = 1011; end?.(1011); });
      const opened = await new Promise<Response | null>((resolve) => {
        upstream.once('open', () => resolve(null));
        // The upstream answered the upgrade with a status: pass it on as it is.
        upstream.once('unexpected-response', (_req, res) => {
          const chunks: Buffer[] = [];
          res.on('data', (d: Buffer) => chunks.push(d));
          res.on('end', () => resolve(new Response(Buffer.concat(chunks), { status: res.statusCode ?? 502, headers: { 'content-type': String(res.headers['content-type'] ?? 'application/json') } })));
          res.on('error', (err) => resolve(unavailable(c, u, err)));
        });
        upstream.once('error', (err) => resolve(unavailable(c, u, err)));
      });
      if (opened) { upstream.terminate(); return opened; }
      return await acceptWebSocket(c, (client) => {
        for (const text of held.splice(0)) client.send(text);
        out = (text) => client.send(text);
        end = (code) => client.close(code);
        if (closedWith !== undefined) client.close(closedWith);
        return () => { if (upstream.readyState === upstream.OPEN || upstream.readyState === upstream.CONNECTING) upstream.close(1000); };
      });
    },

    async forward(c, u) {
      const busy = inflight.get(u.target) ?? 0;
      if (o.maxInflightPerUpstream && busy >= o.maxInflightPerUpstream) {
        o.metrics?.httpShed.inc({ reason: 'upstream_full' });
        return c.json(errorBody('UNAVAILABLE', `the ${u.target} service is saturated; try again shortly`), 503, { 'Retry-After': '1' });
      }
      inflight.set(u.target, busy + 1);
      try {
        // From the headers: touching c.req.raw.body would make @hono/node-server build the web stream.
        const hasBody = c.req.method !== 'GET' && c.req.method !== 'HEAD' && ((c.req.header('content-length') ?? '0') !== '0' || c.req.header('transfer-encoding') !== undefined);
        let res: IncomingMessage;
        try {
          try {
            res = await send(c, u, hasBody ? requestBody(c) : undefined);
          } catch (err) {
            // A pooled socket the upstream closed as we picked it: a bodiless request is sent again, once
            // (not when the client left: then the reset was ours, and nobody waits for an answer).
            if (hasBody || (err as NodeJS.ErrnoException).code !== 'ECONNRESET' || c.req.raw.signal.aborted) throw err;
            res = await send(c, u, undefined);
          }
        } catch (err) {
          return unavailable(c, u, err);
        }
        const headers = new Headers();
        for (const [k, v] of Object.entries(res.headers as IncomingHttpHeaders)) {
          if (v === undefined || HOP_BY_HOP.has(k)) continue;
          for (const one of Array.isArray(v) ? v : [v]) headers.append(k, one);
        }
        const empty = c.req.method === 'HEAD' || res.statusCode === 204 || res.statusCode === 304;
        if (empty) { res.resume(); return new Response(null, { status: res.statusCode ?? 502, headers }); }
        // A small answer of declared length (nearly every API answer) is read whole and sent as a
        // buffer: a web stream per response (Readable.toWeb) was most of the gateway's CPU per
        // request (bench:edge). Streams (SSE) and large or undeclared bodies still flow through.
        const length = Number(res.headers['content-length']);
        if (length <= BUFFERED_ANSWER_BYTES && !String(res.headers['content-type'] ?? '').startsWith('text/event-stream')) {
          try {
            const chunks: Buffer[] = [];
            for await (const chunk of res) chunks.push(chunk as Buffer);
            return new Response(Buffer.concat(chunks), { status: res.statusCode ?? 502, headers });
          } catch (err) {
            return unavailable(c, u, err);
          }
        }
        return new Response(Readable.toWeb(res) as ReadableStream, { status: res.statusCode ?? 502, headers });
      } finally {
        inflight.set(u.target, (inflight.get(u.target) ?? 1) - 1);
      }
    },
    sockets() {
      const out: Record<string, number> = {};
      for (const [target, a] of agents) {
        out[target] = [...Object.values(a.sockets), ...Object.values(a.freeSockets)].reduce((n, list) => n + (list?.length ?? 0), 0);
      }
      return out;
    },
    close() { for (const a of agents.values()) a.destroy(); },
  };
}
