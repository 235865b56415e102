// The load generator of bench:funding, in a worker thread so its own work never shows
// up in the service's event-loop delay. Phase 1: POST every application at `postRps`
// (open loop). Phase 2: GET .../status for the accepted ids at
// `statusRps` until the main thread says stop.
import { parentPort, workerData } from 'node:worker_threads';
import { request } from './http-client.ts';

type Data = { url: string; token: string; bodies: unknown[]; postRps: number; statusRps: number };
const { url, token, bodies, postRps, statusRps } = workerData as Data;

let stop = false;
parentPort!.on('message', (m) => { if (m === 'stop') stop = true; });

// Open loop: application i is sent at i / postRps s, whatever happened to the others,
// and its latency counts from that instant (no coordinated omission).
const postMs: number[] = [];
const ids: string[] = [];
let postErrors = 0;
const startedAt = performance.now();
const posts: Promise<void>[] = [];
for (let n = 0; n < bodies.length; n++) {
  const due = startedAt + (n * 1000) / postRps;
  const wait = due - performance.now();
  if (wait > 0) await new Promise((r) => setTimeout(r, wait));
  posts.push(request(`${url}/api/funding/applications`, { method: 'POST', body: bodies[n], token })
    .then((res) => {
      postMs.push(performance.now() - due);
      if (res.status === 202 && res.body?.id) ids.push(res.body.id); else postErrors++;
    }, () => { postErrors++; }));
}
await Promise.all(posts);
const postWallMs = performance.now() - startedAt;
parentPort!.postMessage({ phase: 'posted', ids, postMs, postErrors, postWallMs });

// Open loop at a fixed rate, like users refreshing a status page: a slow answer does
// not slow the arrivals down (a closed loop would hide queueing).
const statusMs: number[] = [];
const sources: Record<string, number> = {};
let statusErrors = 0;
let i = 0;
const inflight = new Set<Promise<void>>();
const gap = 1000 / Math.max(1, statusRps);
let due = performance.now();
while (!stop && ids.length) {
  const id = ids[(i++ * 7919) % ids.length];
  const t = performance.now();
  const p = request(`${url}/api/funding/applications/${id}/status`, { token }).then((res) => {
    const ms = performance.now() - t;
    const source = String(res.headers['x-status-source'] ?? 'none');
    sources[source] = (sources[source] ?? 0) + 1;
    if (res.status !== 200) statusErrors++;
    else if (source === 'kv') statusMs.push(ms);
  }, () => { statusErrors++; }).finally(() => inflight.delete(p));
  inflight.add(p);
  due += gap;
  const wait = due - performance.now();
  if (wait > 0) await new Promise((r) => setTimeout(r, wait));
}
await Promise.all(inflight);
const { user, system } = process.threadCpuUsage();
parentPort!.postMessage({ phase: 'status', statusMs, sources, statusErrors, cpuMs: (user + system) / 1000 });
