// A client thread of bench:funding-connections: holds its share of the live status
// connections (SSE over node:http, one socket each; WebSocket over `ws`), and times each
// status change from the moment the service changed the row (the status body's
// updatedAt, the same machine's clock) to its arrival here. Runs in a worker thread, so
// a few thousand sockets' parsing is spread over threads and never in the service.
import http from 'node:http';
import { parentPort, workerData } from 'node:worker_threads';
import WebSocket from 'ws';

type Conn = { id: string; kind: 'sse' | 'ws' };
type Data = { url: string; token: string; conns: Conn[]; concurrency: number };
const { url, token, conns, concurrency } = workerData as Data;

type Status = { id: string; status: string; updatedAt: string };
/** Per connection: when it opened, the first status (the current one) and the delay of each later one. */
const first: (string | undefined)[] = new Array(conns.length);
const delays: number[] = [];
const kinds: ('sse' | 'ws')[] = [];
/** When each delivered change happened (its updatedAt, epoch ms). */
const changedAt: number[] = [];
/** Connections that received at least one change. */
const reached = new Set<number>();
const errors: Record<string, number> = {};
let open = 0;
let changed = 0;
const closers: (() => void)[] = [];
const fail = (why: string) => { errors[why] = (errors[why] ?? 0) + 1; };

const received = (i: number, s: Status) => {
  if (first[i] === undefined) { first[i] = s.status; return; }
  // Only a change counts: the service never repeats a version, but be strict.
  if (s.status === first[i]) return;
  const at = Date.parse(s.updatedAt);
  delays.push(Date.now() - at);
  kinds.push(conns[i]!.kind);
  changedAt.push(at);
  reached.add(i);
  changed++;
  first[i] = s.status;
};

/** Open connection i; resolves once its first status arrived (or it failed). */
function openSse(i: number): Promise<void> {
  return new Promise((resolve) => {
    let settled = false;
    const done = (err?: string) => { if (err && !settled) fail(err); if (!settled) { settled = true; if (!err) open++; resolve(); } };
    const req = http.request(`${url}/api/funding/applications/${conns[i]!.id}/events`, {
      agent: false, headers: { accept: 'text/event-stream', authorization: `Bearer ${token}` },
    }, (res) => {
      if (res.statusCode !== 200) { res.resume(); done(`sse ${res.statusCode}`); return; }
      res.setEncoding('utf8');
      let buf = '';
      res.on('data', (chunk: string) => {
        buf += chunk;
        let end: number;
        while ((end = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, end);
          buf = buf.slice(end + 2);
          const data = block.split('\n').find((l) => l.startsWith('data:'));
          if (!data) continue; // a ping
          try { received(i, JSON.parse(data.slice(5).trim())); } catch { fail('sse bad event'); }
          done();
        }
      });
      res.on('error', () => done('sse reset'));
      res.on('close', () => done('sse closed before its first status'));
    });
    req.on('error', (e: NodeJS.ErrnoException) => done(`sse ${e.code ?? e.message}`));
    req.end();
    closers.push(() => req.destroy());
  });
}

function openWs(i: number): Promise<void> {
  return new Promise((resolve) => {
    let settled = false;
    const done = (err?: string) => { if (err && !settled) fail(err); if (!settled) { settled = true; if (!err) open++; resolve(); } };
    const ws = new WebSocket(`${url.replace(/^http/, 'ws')}/api/funding/applications/${conns[i]!.id}/ws`, {
      headers: { authorization: `Bearer ${token}` }, perMessageDeflate: false,
    });
    ws.on('message', (d) => {
      try { received(i, JSON.parse(String(d))); } catch { fail('ws bad frame'); }
      done();
    });
    ws.on('unexpected-response', (_req, res) => { done(`ws ${res.statusCode}`); ws.terminate(); });
    ws.on('error', (e: NodeJS.ErrnoException) => done(`ws ${e.code ?? e.message}`));
    ws.on('close', () => done('ws closed before its first status'));
    closers.push(() => ws.terminate());
  });
}

// A bounded number of handshakes in flight, as many clients arriving at once would be.
const t0 = performance.now();
let next = 0;
await Promise.all(Array.from({ length: concurrency }, async () => {
  while (next < conns.length) {
    const i = next++;
    await (conns[i]!.kind === 'sse' ? openSse(i) : openWs(i));
  }
}));
parentPort!.postMessage({ phase: 'opened', open, errors, openMs: performance.now() - t0 });

parentPort!.on('message', (m) => {
  if (m === 'report') parentPort!.postMessage({ phase: 'progress', changed });
  if (m === 'collect') {
    const { user, system } = process.threadCpuUsage();
    parentPort!.postMessage({ phase: 'collected', delays, kinds, changedAt, reached: reached.size, changed, errors, cpuMs: (user + system) / 1000 });
  }
  if (m === 'close') { for (const c of closers) c(); parentPort!.postMessage({ phase: 'closed' }); }
});
