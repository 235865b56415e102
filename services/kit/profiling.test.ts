import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { gunzipSync } from 'node:zlib';
import { Profile } from 'pprof-format';
import { afterAll, describe, expect, it } from 'vitest';
import { createLogger } from './log.ts';
import { createProfiler, startContinuousProfiling } from './profiling.ts';
import { eventually, startTestCluster } from '../testing/index.ts';

const profiler = createProfiler({ samplingIntervalUs: 200 });
afterAll(async () => { await profiler.close(); });

// Named so the profile can be searched for it; busy enough to be sampled many times.
function orderflowProfilingBurn(ms: number) {
  const end = Date.now() + ms;
  let x = 0;
  while (Date.now() < end) x += Math.sqrt(x + 1);
  return x;
}

const decode = (gz: Uint8Array) => Profile.decode(gunzipSync(gz));
const names = (p: Profile) => new Set(p.function.map((f) => p.stringTable.strings[Number(f.name)]));
const sampleTypes = (p: Profile) => p.sampleType.map((t) => `${p.stringTable.strings[Number(t.type)]}/${p.stringTable.strings[Number(t.unit)]}`);

describe('profiling', () => {
  it('takes a CPU profile in pprof format whose samples show the code that burned the CPU', async () => {
    let done = false;
    const pending = profiler.cpu(1).finally(() => { done = true; });
    // Burn in slices for the whole profile, so the profiler's own steps and timer get turns.
    while (!done) { orderflowProfilingBurn(30); await new Promise((r) => setImmediate(r)); }
    const p = decode(await pending);
    expect(sampleTypes(p)).toEqual(['samples/count', 'cpu/nanoseconds']);
    // V8 may inline the burn into its caller, so look for the file rather than the name:
    // most of the CPU time sits in stacks whose leaf is code of this file.
    const here = new Set(p.function.filter((f) => p.stringTable.strings[Number(f.filename)]!.endsWith('profiling.test.ts')).map((f) => f.id));
    const leafHere = new Set(p.location.filter((l) => here.has(l.line[0]!.functionId)).map((l) => l.id));
    const cpuOf = (pred: (s: (typeof p.sample)[number]) => boolean) => p.sample.reduce((a, s) => a + (pred(s) ? Number(s.value[1]) : 0), 0);
    const inBurn = cpuOf((s) => leafHere.has(s.locationId[0]!));
    expect(inBurn).toBeGreaterThan(0.3 * cpuOf(() => true));
  });

  it('refuses a second CPU profile while one runs, and a heap profile shows live allocations', async () => {
    const first = profiler.cpu(1);
    await expect(profiler.cpu(1)).rejects.toThrow(/already/);
    await first;
    const keep: number[][] = [];
    for (let i = 0; i < 200; i++) keep.push(new Array(10_000).fill(i));
    await profiler.heap(); // starts sampling
    const keep2: number[][] = [];
    for (let i = 0; i < 200; i++) keep2.push(new Array(10_000).fill(i));
    const p = decode(await profiler.heap());
    expect(sampleTypes(p)).toEqual(['inuse_objects/count', 'inuse_space/bytes']);
    expect(p.sample.reduce((a, s) => a + Number(s.value[1]), 0)).toBeGreaterThan(1_000_000);
    expect(keep.length + keep2.length).toBe(400);
  });

  it('pushes a profile per period to Pyroscope /ingest, and keeps going through a failing receiver', async () => {
    const got: { url: string; body: Buffer; type: string }[] = [];
    let fail = true;
    const server = createServer(async (req: IncomingMessage, res) => {
      const chunks: Buffer[] = [];
      for await (const c of req) chunks.push(c as Buffer);
      if (fail) { fail = false; res.statusCode = 503; res.end(); return; }
      got.push({ url: req.url!, body: Buffer.concat(chunks), type: req.headers['content-type'] ?? '' });
      res.end();
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const own = createProfiler();
    const cont = startContinuousProfiling({ profiler: own, url, appName: 'orderflow.test', labels: { instance: 'a{b}' }, periodS: 1, log: createLogger({ level: 'silent' }) });
    try {
      await eventually(() => got.length >= 1, { what: 'a profile pushed after a failed one', timeoutMs: 15_000 });
    } finally {
      await cont.stop();
      await own.close();
      server.close();
    }
    const q = new URL(got[0]!.url, url);
    expect(q.pathname).toBe('/ingest');
    expect(q.searchParams.get('name')).toBe('orderflow.test.cpu{instance=a_b_}');
    expect(q.searchParams.get('format')).toBe('pprof');
    expect(Number(q.searchParams.get('until'))).toBeGreaterThanOrEqual(Number(q.searchParams.get('from')));
    expect(got[0]!.type).toMatch(/^multipart\/form-data; boundary=/);
    // The multipart part named "profile" holds a gzipped pprof.
    const start = got[0]!.body.indexOf(Buffer.from([0x1f, 0x8b]));
    const boundary = got[0]!.type.split('boundary=')[1]!;
    const end = got[0]!.body.indexOf(Buffer.from(`\r\n--${boundary}`), start);
    expect(got[0]!.body.subarray(0, start).toString()).toMatch(/name="profile"/);
    expect(sampleTypes(decode(got[0]!.body.subarray(start, end)))).toEqual(['samples/count', 'cpu/nanoseconds']);
  });
});

describe('GET /debug/pprof/* on a running process', () => {
  it('is for admins only, and answers a pprof the decoder reads', async () => {
    const c = await startTestCluster({ TARGET: 'admin' });
    try {
      expect((await c.as(null).get('/debug/pprof/heap')).status).toBe(401);
      const customer = await c.user(['customer']);
      expect((await customer.get('/debug/pprof/heap')).status).toBe(403);
      expect((await c.get('/debug/pprof/profile?seconds=0')).status).toBe(400);
      const heap = await fetch(`${c.url}/debug/pprof/heap`, { headers: await c.authHeaders() });
      expect(heap.status).toBe(200);
      expect(heap.headers.get('content-type')).toBe('application/octet-stream');
      expect(sampleTypes(decode(new Uint8Array(await heap.arrayBuffer())))).toEqual(['inuse_objects/count', 'inuse_space/bytes']);
      const cpu = await fetch(`${c.url}/debug/pprof/profile?seconds=1`, { headers: await c.authHeaders() });
      expect(cpu.status).toBe(200);
      expect(sampleTypes(decode(new Uint8Array(await cpu.arrayBuffer())))).toEqual(['samples/count', 'cpu/nanoseconds']);
    } finally {
      await c.close();
    }
  });
});
