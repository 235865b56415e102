// A local OTLP/HTTP trace receiver for the benches: accepts POST /v1/traces in
// http/json or http/protobuf, answers 200 as a collector does, and counts what arrived.
// With `keep`, JSON spans are kept (name, service, trace id, start, end) for a look at
// where a unit of work spent its time. Not a collector: nothing is forwarded or stored.
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';

export type ReceivedSpan = { traceId: string; spanId: string; parentSpanId?: string; name: string; service: string; startMs: number; endMs: number };

export async function startOtlpReceiver(opts: { keep?: boolean } = {}) {
  let requests = 0, bytes = 0, spans = 0;
  const kept: ReceivedSpan[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      requests++;
      bytes += body.length;
      if ((req.headers['content-type'] ?? '').includes('json')) {
        try {
          const doc = JSON.parse(body.toString('utf8'));
          for (const rs of doc.resourceSpans ?? []) {
            const service = (rs.resource?.attributes ?? []).find((a: any) => a.key === 'service.name')?.value?.stringValue ?? '?';
            for (const ss of rs.scopeSpans ?? []) for (const s of ss.spans ?? []) {
              spans++;
              if (opts.keep) kept.push({ traceId: s.traceId, spanId: s.spanId, parentSpanId: s.parentSpanId || undefined, name: s.name, service, startMs: Number(BigInt(s.startTimeUnixNano) / 1000n) / 1000, endMs: Number(BigInt(s.endTimeUnixNano) / 1000n) / 1000 });
            }
          }
        } catch { /* a body we cannot read still counts as received */ }
      }
      res.writeHead(200, { 'content-type': req.headers['content-type'] ?? 'application/json' }).end(req.headers['content-type']?.includes('json') ? '{}' : '');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url,
    stats: () => ({ requests, bytes, spans }),
    spans: () => kept,
    // Exporters keep their connections alive: end them, or close() waits for their processes to exit.
    close: () => new Promise<void>((r) => { server.close(() => r()); server.closeAllConnections(); }),
  };
}
