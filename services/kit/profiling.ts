// CPU and heap profiles of this process in pprof format (seed 002), on demand and, when
// PYROSCOPE_URL is set, continuously to Pyroscope.
//
// Profiles come from V8 through node:inspector (the sampling CPU profiler and the sampling
// heap profiler: no native addon) and are encoded with pprof-format, so `go tool pprof`,
// Pyroscope and Grafana read them. The inspector allows one CPU profile at a time per
// process, so on-demand and continuous profiles share one session and take turns.
import { Session } from 'node:inspector/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { gzipSync } from 'node:zlib';
import { Function as PFunction, Line, Location, Profile, Sample, StringTable, ValueType } from 'pprof-format';
import { HttpError } from './http/errors.ts';
import type { Logger } from './log.ts';

type CallFrame = { functionName: string; url: string; lineNumber: number; columnNumber: number };
type CpuNode = { id: number; callFrame: CallFrame; children?: number[] };
type CpuProfile = { nodes: CpuNode[]; startTime: number; endTime: number; samples?: number[]; timeDeltas?: number[] };
type HeapNode = { id: number; callFrame: CallFrame; selfSize: number; children: HeapNode[] };
type HeapProfile = { head: HeapNode; samples: { size: number; nodeId: number }[] };

/** The profiler is busy with another CPU profile: one at a time per process. */
export class ProfilerBusyError extends Error {
  override name = 'ProfilerBusyError';
}

// One pprof Function per distinct frame and one Location per call-tree node.
function builder() {
  const strings = new StringTable();
  const functions = new Map<string, PFunction>();
  const locations: Location[] = [];
  const functionOf = (f: CallFrame) => {
    const name = f.functionName || '(anonymous)';
    const key = `${name}\u0000${f.url}\u0000${f.lineNumber}`;
    let fn = functions.get(key);
    if (!fn) {
      fn = new PFunction({ id: functions.size + 1, name: strings.dedup(name), systemName: strings.dedup(name), filename: strings.dedup(f.url), startLine: f.lineNumber + 1 });
      functions.set(key, fn);
    }
    return fn;
  };
  const location = (f: CallFrame) => {
    const loc = new Location({ id: locations.length + 1, line: [new Line({ functionId: Number(functionOf(f).id), line: f.lineNumber + 1 })] });
    locations.push(loc);
    return locations.length;
  };
  return { strings, location, functions: () => [...functions.values()], locations: () => locations };
}

// V8's bookkeeping nodes that are not code anyone can act on (GC time is kept: it is real cost).
const NOT_CODE = new Set(['(root)', '(program)', '(idle)']);

/** A V8 CPU profile as pprof (sample count and CPU nanoseconds per stack); exported for its test. */
export function cpuProfileToPprof(p: CpuProfile): Profile {
  const b = builder();
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const locOf = new Map<number, number>();
  for (const n of p.nodes) locOf.set(n.id, b.location(n.callFrame));
  // Time per node: each sample's delta belongs to the node sampled (V8's own reading).
  const hits = new Map<number, { count: number; micros: number }>();
  const samples = p.samples ?? [];
  const deltas = p.timeDeltas ?? [];
  for (let i = 0; i < samples.length; i++) {
    const h = hits.get(samples[i]!) ?? { count: 0, micros: 0 };
    h.count++;
    h.micros += Math.max(0, deltas[i + 1] ?? deltas[i] ?? 0);
    hits.set(samples[i]!, h);
  }
  const out: Sample[] = [];
  for (const [id, h] of hits) {
    const node = byId.get(id);
    if (!node || NOT_CODE.has(node.callFrame.functionName)) continue;
    const stack: number[] = [];
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      if (byId.get(cur)!.callFrame.functionName !== '(root)') stack.push(locOf.get(cur)!);
    }
    out.push(new Sample({ locationId: stack, value: [h.count, h.micros * 1000] }));
  }
  const cpu = new ValueType({ type: b.strings.dedup('cpu'), unit: b.strings.dedup('nanoseconds') });
  const durationMicros = Math.max(0, p.endTime - p.startTime);
  return new Profile({
    sampleType: [new ValueType({ type: b.strings.dedup('samples'), unit: b.strings.dedup('count') }), cpu],
    sample: out, location: b.locations(), function: b.functions(), stringTable: b.strings,
    timeNanos: BigInt(Date.now() - Math.round(durationMicros / 1000)) * 1_000_000n,
    durationNanos: durationMicros * 1000,
    periodType: cpu, period: samples.length ? Math.round((durationMicros * 1000) / samples.length) : 0,
  });
}

/** A V8 sampling heap profile as pprof (live objects and bytes per allocation stack); exported for its test. */
export function heapProfileToPprof(p: HeapProfile): Profile {
  const b = builder();
  const counts = new Map<number, number>();
  for (const s of p.samples) counts.set(s.nodeId, (counts.get(s.nodeId) ?? 0) + 1);
  const out: Sample[] = [];
  const walk = (n: HeapNode, stack: number[]) => {
    const here = n.callFrame.functionName === '(root)' ? stack : [b.location(n.callFrame), ...stack];
    if (n.selfSize > 0) out.push(new Sample({ locationId: here, value: [counts.get(n.id) ?? 0, n.selfSize] }));
    for (const c of n.children) walk(c, here);
  };
  walk(p.head, []);
  const space = new ValueType({ type: b.strings.dedup('inuse_space'), unit: b.strings.dedup('bytes') });
  return new Profile({
    sampleType: [new ValueType({ type: b.strings.dedup('inuse_objects'), unit: b.strings.dedup('count') }), space],
    sample: out, location: b.locations(), function: b.functions(), stringTable: b.strings,
    timeNanos: BigInt(Date.now()) * 1_000_000n, periodType: space, period: 512 * 1024,
  });
}

export type Profiler = {
  /** Sample the CPU for `seconds` (less if `signal` aborts); gzipped pprof. Throws ProfilerBusyError while another CPU profile runs. */
  cpu(seconds: number, signal?: AbortSignal): Promise<Buffer>;
  /** The heap as sampled since the profiler was created (sampling starts on first use); gzipped pprof. */
  heap(): Promise<Buffer>;
  close(): Promise<void>;
};

/** `const profiler = createProfiler(); const pprof = await profiler.cpu(10)` */
export function createProfiler(opts: { samplingIntervalUs?: number; heapSamplingBytes?: number } = {}): Profiler {
  let session: Session | undefined;
  let heapSampling = false;
  let cpuBusy = false;
  const open = async () => {
    if (!session) { session = new Session(); session.connect(); }
    return session;
  };
  return {
    async cpu(seconds, signal) {
      if (cpuBusy) throw new ProfilerBusyError('a CPU profile is already being taken in this process');
      cpuBusy = true;
      try {
        const s = await open();
        await s.post('Profiler.enable');
        await s.post('Profiler.setSamplingInterval', { interval: opts.samplingIntervalUs ?? 1000 });
        await s.post('Profiler.start');
        await sleep(seconds * 1000, undefined, { signal }).catch(() => { /* aborted: stop early */ });
        const { profile } = await s.post('Profiler.stop') as { profile: CpuProfile };
        await s.post('Profiler.disable');
        return gzipSync(cpuProfileToPprof(profile).encode());
      } finally {
        cpuBusy = false;
      }
    },
    async heap() {
      const s = await open();
      if (!heapSampling) {
        await s.post('HeapProfiler.enable');
        await s.post('HeapProfiler.startSampling', { samplingInterval: opts.heapSamplingBytes ?? 512 * 1024 });
        heapSampling = true;
      }
      const { profile } = await s.post('HeapProfiler.getSamplingProfile') as unknown as { profile: HeapProfile };
      return gzipSync(heapProfileToPprof(profile).encode());
    },
    async close() {
      if (!session) return;
      if (heapSampling) await session.post('HeapProfiler.stopSampling').catch(() => {});
      session.disconnect();
      session = undefined;
    },
  };
}

/**
 * Push a CPU profile of every `periodS` seconds to Pyroscope's /ingest (format=pprof), until
 * stopped. A failed push is logged and the next period goes on: profiling never takes the
 * service down. `const stop = startContinuousProfiling({ profiler, url, appName: 'orderflow.orders', labels: { instance }, log })`
 */
export function startContinuousProfiling(o: {
  profiler: Profiler; url: string; appName: string; labels?: Record<string, string>; periodS?: number; log: Logger;
}): { stop(): Promise<void> } {
  const periodS = o.periodS ?? 10;
  const labels = Object.entries(o.labels ?? {}).map(([k, v]) => `${k}=${v.replace(/[{},=]/g, '_')}`).join(',');
  const name = `${o.appName}.cpu${labels ? `{${labels}}` : ''}`;
  const stopping = new AbortController();
  let failures = 0;
  const loop = (async () => {
    while (!stopping.signal.aborted) {
      const from = Math.floor(Date.now() / 1000);
      let pprof: Buffer;
      try {
        pprof = await o.profiler.cpu(periodS, stopping.signal);
      } catch (err) {
        // Someone took an on-demand profile: skip this period rather than fight over the profiler.
        if (!(err instanceof ProfilerBusyError)) o.log.warn({ err }, 'continuous profiling: taking a profile failed');
        await sleep(1000, undefined, { signal: stopping.signal }).catch(() => {});
        continue;
      }
      if (stopping.signal.aborted) break;
      const until = Math.floor(Date.now() / 1000);
      const form = new FormData();
      form.append('profile', new Blob([new Uint8Array(pprof)]), 'profile.pprof');
      const target = new URL('/ingest', o.url);
      target.search = new URLSearchParams({ name, from: String(from), until: String(until), format: 'pprof', spyName: 'nodespy' }).toString();
      try {
        const res = await fetch(target, { method: 'POST', body: form, signal: AbortSignal.timeout(5000) });
        if (!res.ok) throw new Error(`Pyroscope answered ${res.status}`);
        await res.body?.cancel();
        failures = 0;
      } catch (err) {
        // Once per outage, not once per period.
        if (failures++ === 0) o.log.warn({ err, url: o.url }, 'continuous profiling: push to Pyroscope failed; will keep trying');
      }
    }
  })();
  return { async stop() { stopping.abort(); await loop; } };
}

/**
 * The answers of `GET /debug/pprof/profile?seconds=10` and `GET /debug/pprof/heap` (Go's names, so
 * `go tool pprof http://host/debug/pprof/profile` works): gzipped pprof downloads. The runtime
 * declares the routes admin-only: a profile shows code paths and heap contents.
 * `const answer = await profileAnswers(profiler).cpu(10, c.req.raw.signal)`
 */
export function profileAnswers(profiler: Profiler) {
  const pprof = (body: Buffer, name: string) => new Response(new Uint8Array(body), {
    headers: { 'content-type': 'application/octet-stream', 'content-disposition': `attachment; filename="${name}.pb.gz"`, 'cache-control': 'no-store' },
  });
  return {
    async cpu(seconds: number, signal?: AbortSignal) {
      try {
        return pprof(await profiler.cpu(seconds, signal), 'cpu');
      } catch (err) {
        if (err instanceof ProfilerBusyError) throw new HttpError(409, 'PROFILER_BUSY', err.message);
        throw err;
      }
    },
    heap: async () => pprof(await profiler.heap(), 'heap'),
  };
}
