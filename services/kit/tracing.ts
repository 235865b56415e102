// Tracing: one trace per unit of work (BRIEF.md, "Observability conventions"). The HTTP
// request's span context rides in the outbox row's headers (traceparent, tracestate),
// the relay puts it on the NATS message, every consumer continues it, and the external
// calls (T24, gateway, SMS, SMTP) and the scoring pool are spans of that trace.
//
// The runtime builds one `Tracing` from the environment (createTracing) and hands it to
// whatever makes spans, through Deps. With OTEL_EXPORTER_OTLP_ENDPOINT (or
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) unset, tracing is off: `on` is false, no span is
// made, no header read or written, and no context manager is registered.
//
// Global state: only the OpenTelemetry API's context manager (an AsyncLocalStorage that
// makes `context.active()` follow a request through its awaits). The API has no other way
// to carry context across async code, so createTracing registers it when tracing is on and
// its shutdown() unregisters it. The tracer provider and the propagator are NOT global:
// spans come from `tracing.tracer`, headers from the functions below (the W3C propagator
// is stateless).
import {
  context, isSpanContextValid, ROOT_CONTEXT, SpanKind, SpanStatusCode, trace,
  type Attributes, type Context, type Link, type Span, type TextMapGetter, type Tracer,
} from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { OTLPTraceExporter as OtlpJsonExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { OTLPTraceExporter as OtlpProtoExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { resourceFromAttributes } from '@opentelemetry/resources';
import {
  AlwaysOffSampler, AlwaysOnSampler, BasicTracerProvider, BatchSpanProcessor, ParentBasedSampler, SimpleSpanProcessor,
  TraceIdRatioBasedSampler, type Sampler, type SpanExporter,
} from '@opentelemetry/sdk-trace-base';
import { ATTR_SERVICE_NAME } from '@opentelemetry/semantic-conventions';
import { ConfigError } from './errors.ts';
import { H } from './nats.ts';

export { SpanKind, SpanStatusCode, type Span };
/** A unit of work's trace position (an OpenTelemetry Context): hand it to withTrace or carryHeaders. */
export type Trace = Context;

export type Tracing = {
  /** Spans are made and exported. False: every helper runs its function bare. */
  readonly on: boolean;
  readonly tracer: Tracer;
  /** Run `fn` in a new span, a child of `parent` (default: the active trace); the span ends when `fn` settles, an error marks it failed. */
  span<R>(name: string, o: SpanOptions, fn: (span: Span) => Promise<R>): Promise<R>;
  /** Export what is buffered (tests, shutdown). */
  flush(): Promise<void>;
  /** Flush and stop; unregisters the context manager this instance registered. */
  shutdown(): Promise<void>;
};

export type SpanOptions = { kind?: SpanKind; attributes?: Attributes; parent?: Trace; links?: Link[] };

// Stateless: it only reads and writes the two W3C headers.
const w3c = new W3CTraceContextPropagator();
// A span that records nothing, for `fn(span)` while tracing is off.
const NO_SPAN = trace.wrapSpanContext({ traceId: '0'.repeat(32), spanId: '0'.repeat(16), traceFlags: 0 });

/** Tracing off: what the runtime uses when no OTLP endpoint is set, and what kit functions default to. */
export const tracingOff: Tracing = {
  on: false,
  tracer: trace.getTracerProvider().getTracer('orderflow'),
  span: (_name, _o, fn) => fn(NO_SPAN),
  flush: async () => {},
  shutdown: async () => {},
};

type Env = Record<string, string | undefined>;

/** The OTLP traces URL the environment names, or undefined (tracing off). Per the OTLP exporter spec: the signal's own URL as is, the base one plus /v1/traces. */
export function otlpTracesUrl(env: Env): string | undefined {
  const own = env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT?.trim();
  if (own) return own;
  const base = env.OTEL_EXPORTER_OTLP_ENDPOINT?.trim();
  if (!base) return undefined;
  return `${base.replace(/\/+$/, '')}/v1/traces`;
}

/** `k1=v1,k2=v2` (OTEL_EXPORTER_OTLP_HEADERS, OTEL_RESOURCE_ATTRIBUTES), values percent-decoded. */
function keyValues(s: string | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of (s ?? '').split(',')) {
    const i = part.indexOf('=');
    if (i <= 0) continue;
    try { out[decodeURIComponent(part.slice(0, i).trim())] = decodeURIComponent(part.slice(i + 1).trim()); } catch { /* a malformed pair is skipped */ }
  }
  return out;
}

/** OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG (default parentbased_always_on: a sampled caller's trace is always kept). */
function samplerFrom(env: Env): Sampler {
  const name = (env.OTEL_TRACES_SAMPLER ?? 'parentbased_always_on').trim();
  const arg = env.OTEL_TRACES_SAMPLER_ARG === undefined ? 1 : Number(env.OTEL_TRACES_SAMPLER_ARG);
  if ((name.endsWith('traceidratio')) && !(arg >= 0 && arg <= 1)) throw new ConfigError(`OTEL_TRACES_SAMPLER_ARG must be a ratio between 0 and 1, got ${env.OTEL_TRACES_SAMPLER_ARG}`);
  switch (name) {
    case 'always_on': return new AlwaysOnSampler();
    case 'always_off': return new AlwaysOffSampler();
    case 'traceidratio': return new TraceIdRatioBasedSampler(arg);
    case 'parentbased_always_on': return new ParentBasedSampler({ root: new AlwaysOnSampler() });
    case 'parentbased_always_off': return new ParentBasedSampler({ root: new AlwaysOffSampler() });
    case 'parentbased_traceidratio': return new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(arg) });
    default: throw new ConfigError(`OTEL_TRACES_SAMPLER ${name} is not supported (always_on, always_off, traceidratio, parentbased_always_on, parentbased_always_off, parentbased_traceidratio)`);
  }
}

/**
 * The process's tracing, from the environment: OTLP export when OTEL_EXPORTER_OTLP_ENDPOINT
 * (or ..._TRACES_ENDPOINT) is set, with OTEL_EXPORTER_OTLP_PROTOCOL `http/protobuf` (default)
 * or `http/json`, OTEL_EXPORTER_OTLP_HEADERS, OTEL_SERVICE_NAME (default `orderflow-<targets>`),
 * OTEL_RESOURCE_ATTRIBUTES and OTEL_TRACES_SAMPLER(_ARG); off otherwise, or with OTEL_SDK_DISABLED=true.
 * `exporter` (tests: an InMemorySpanExporter) turns it on without an endpoint and exports each span as it ends.
 * `const tracing = createTracing({ env, service: 'orderflow-orders' })`
 */
export function createTracing(o: { env: Env; service: string; instance?: string; exporter?: SpanExporter }): Tracing {
  const { env } = o;
  const url = otlpTracesUrl(env);
  if (env.OTEL_SDK_DISABLED?.trim().toLowerCase() === 'true' || (!url && !o.exporter)) return tracingOff;
  let exporter = o.exporter;
  if (!exporter) {
    const protocol = (env.OTEL_EXPORTER_OTLP_TRACES_PROTOCOL ?? env.OTEL_EXPORTER_OTLP_PROTOCOL ?? 'http/protobuf').trim();
    const headers = { ...keyValues(env.OTEL_EXPORTER_OTLP_HEADERS), ...keyValues(env.OTEL_EXPORTER_OTLP_TRACES_HEADERS) };
    if (protocol === 'http/json') exporter = new OtlpJsonExporter({ url, headers });
    else if (protocol === 'http/protobuf') exporter = new OtlpProtoExporter({ url, headers });
    else throw new ConfigError(`OTEL_EXPORTER_OTLP_PROTOCOL ${protocol} is not supported: use http/protobuf or http/json`);
  }
  const provider = new BasicTracerProvider({
    resource: resourceFromAttributes({
      ...keyValues(env.OTEL_RESOURCE_ATTRIBUTES),
      [ATTR_SERVICE_NAME]: env.OTEL_SERVICE_NAME?.trim() || o.service,
      ...(o.instance ? { 'service.instance.id': o.instance } : {}),
    }),
    sampler: samplerFrom(env),
    // A test's exporter sees each span as it ends; a real one gets batches off the hot path.
    spanProcessors: [o.exporter ? new SimpleSpanProcessor(exporter) : new BatchSpanProcessor(exporter)],
  });
  // See the header: the one global, and only while tracing is on. A second in-process
  // runtime (tests) finds it registered and shares it: any AsyncLocalStorage manager
  // carries the API's contexts.
  const registered = context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  const tracer = provider.getTracer('orderflow');
  return {
    on: true,
    tracer,
    span: (name, so, fn) => tracer.startActiveSpan(name, { kind: so.kind ?? SpanKind.INTERNAL, attributes: so.attributes, links: so.links }, so.parent ?? context.active(), (span) => runIn(span, fn)),
    flush: () => provider.forceFlush(),
    async shutdown() {
      await provider.shutdown().catch(() => {});
      if (registered) context.disable();
    },
  };
}

/** Run fn(span), end the span when it settles, and mark it failed if fn threw. */
async function runIn<R>(span: Span, fn: (span: Span) => Promise<R>): Promise<R> {
  try {
    return await fn(span);
  } catch (err) {
    failed(span, err);
    throw err;
  } finally {
    span.end();
  }
}

/** Mark a span failed with the error (its class and message; never a payload). */
export function failed(span: Span, err: unknown): void {
  span.setStatus({ code: SpanStatusCode.ERROR, message: String((err as Error)?.message ?? err).slice(0, 300) });
  span.setAttribute('error.type', (err as Error)?.name ?? 'Error');
}

/** The trace the caller runs in now. */
export const activeTrace = (): Trace => context.active();

/** Run `fn` in `t` (a delivery's trace, say), so the spans it makes and the outbox rows it writes belong to that trace. */
export const withTrace = <R>(t: Trace, fn: () => R): R => context.with(t, fn);

/** A trace continued from a carrier's W3C headers (`get(name)` reads one). ROOT when it names none. */
export function traceFrom(get: (name: string) => string | undefined | null): Trace {
  return w3c.extract(ROOT_CONTEXT, get, getter);
}
const getter: TextMapGetter<(name: string) => string | undefined | null> = {
  get: (get, key) => get(key) ?? undefined,
  keys: () => ['traceparent', 'tracestate'],
};

/** `traceparent` (and `tracestate`) of `t`, into `into`; nothing when `t` holds no span. */
export function injectTrace(into: Record<string, string>, t: Trace = context.active()): Record<string, string> {
  const sc = trace.getSpanContext(t);
  if (sc && isSpanContextValid(sc)) w3c.inject(t, into, { set: (c, k, v) => { c[k] = v; } });
  return into;
}

/**
 * The headers a piece of work hands on to what it causes (an outbox row, a NATS message):
 * X-Request-Id and the trace. undefined when there is neither.
 * `headers: carryHeaders(requestId)` (the active trace) or `carryHeaders(item.requestId, item.trace)`
 */
export function carryHeaders(requestId: string | undefined, t: Trace = context.active()): Record<string, string> | undefined {
  const h = injectTrace(requestId ? { [H.requestId]: requestId } : {}, t);
  for (const _ in h) return h;
  return undefined;
}

/** trace_id and span_id of `t` for a log line's bindings ({} when it holds no span). */
export function traceIds(t: Trace = context.active()): { trace_id?: string; span_id?: string } {
  const sc = trace.getSpanContext(t);
  return sc && isSpanContextValid(sc) ? { trace_id: sc.traceId, span_id: sc.spanId } : {};
}

/**
 * `fetch` with a CLIENT span per call (method, URL without its query, status) and the trace
 * in the request's headers, for clients of external systems (T24, the gateway, SMS).
 * Returns `fetchFn` itself while tracing is off.
 * `const fetch = tracedFetch(tracing, globalThis.fetch, 't24')`
 */
export function tracedFetch<F extends typeof fetch>(tracing: Tracing | undefined, fetchFn: F, peer: string): F {
  if (!tracing?.on) return fetchFn;
  const wrapped = (input: string | URL | Request, init: RequestInit = {}) => {
    const url = new URL(typeof input === 'string' || input instanceof URL ? input : input.url);
    const method = (init.method ?? 'GET').toUpperCase();
    return tracing.span(method, {
      kind: SpanKind.CLIENT,
      attributes: {
        'http.request.method': method, 'url.full': `${url.origin}${url.pathname}`, 'server.address': url.hostname,
        'server.port': Number(url.port) || (url.protocol === 'https:' ? 443 : 80), 'peer.service': peer,
      },
    }, async (span) => {
      const headers = new Headers(init.headers);
      const carried = injectTrace({});
      for (const k in carried) headers.set(k, carried[k]!);
      const res = await fetchFn(input, { ...init, headers });
      span.setAttribute('http.response.status_code', res.status);
      if (res.status >= 500) span.setStatus({ code: SpanStatusCode.ERROR });
      return res;
    });
  };
  return Object.assign(wrapped, fetchFn) as F;
}

type PgClient = { query: (...args: unknown[]) => unknown };

/**
 * A CLIENT span per statement on every connection of a `pg` pool (MikroORM 7 runs its
 * queries through Kysely on one; `driverOptions.onPoolCreated` hands it over): BEGIN, the
 * inbox insert, the handler's statements, COMMIT. Only inside a trace: the pollers'
 * statements (the relay's idle drain, the gauges) would each be a trace of their own.
 * The span names the operation and its first table, never the text: MikroORM inlines the
 * parameters into it, and those hold addresses and sealed tokens.
 * `driverOptions: { onPoolCreated: (pool) => tracePgPool(tracing, pool, 'orderflow') }`
 */
export function tracePgPool(tracing: Tracing, pool: { on(event: 'connect', cb: (client: PgClient) => void): unknown }, database: string): void {
  if (!tracing.on) return;
  pool.on('connect', (client) => {
    const query = client.query;
    client.query = function tracedQuery(this: unknown, ...args: unknown[]) {
      const parent = trace.getSpan(context.active());
      // Callback calls and cursors (not strings) pass as they are; so does work outside a trace.
      if (!parent?.isRecording() || typeof args[0] !== 'string' || typeof args.at(-1) === 'function') return query.apply(this, args);
      const { operation, target } = summarize(args[0]);
      const span = tracing.tracer.startSpan(target ? `${operation} ${target}` : operation, {
        kind: SpanKind.CLIENT,
        attributes: { 'db.system.name': 'postgresql', 'db.namespace': database, 'db.operation.name': operation, ...(target ? { 'db.collection.name': target } : {}) },
      });
      return (query.apply(this, args) as Promise<{ rowCount?: number | null }>).then((r) => {
        if (typeof r?.rowCount === 'number') span.setAttribute('db.response.returned_rows', r.rowCount);
        span.end();
        return r;
      }, (err: unknown) => {
        failed(span, err);
        if ((err as { code?: string })?.code) span.setAttribute('db.response.status_code', String((err as { code?: string }).code));
        span.end();
        throw err;
      });
    };
  });
}

/** The statement's first keyword and the first table it names (`INSERT kit.outbox`), from its text, without a value. */
export function summarize(sql: string): { operation: string; target?: string } {
  const s = sql.trimStart();
  const operation = (/^[a-z]+/i.exec(s)?.[0] ?? 'SQL').toUpperCase();
  const target = /\b(?:from|into|update|join)\s+("?[\w]+"?(?:\."?[\w]+"?)?)/i.exec(s)?.[1]?.replaceAll('"', '');
  return target ? { operation, target } : { operation };
}
