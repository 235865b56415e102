// The benches' HTTP client. A load generator shares the two cores with the system it
// measures, so it uses node:http over kept-alive sockets: fetch (undici) cost about
// twice the CPU per request.
import http from 'node:http';

const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });

export type Reply = { status: number; headers: http.IncomingHttpHeaders; body: any };

/** One request; a JSON body is sent and parsed back. `await request(url + '/api/x', { method: 'POST', body: {...} })` */
export function request(url: string, opts: { method?: string; body?: unknown; token?: string; agent?: http.Agent; timeoutMs?: number } = {}): Promise<Reply> {
  const payload = opts.body === undefined ? undefined : JSON.stringify(opts.body);
  return new Promise((resolve, reject) => {
    const headers: http.OutgoingHttpHeaders = payload === undefined ? {} : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) };
    if (opts.token) headers.authorization = `Bearer ${opts.token}`;
    const req = http.request(url, { method: opts.method ?? 'GET', agent: opts.agent ?? agent, headers }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => { text += d; });
      res.on('end', () => {
        let parsed: unknown = null;
        try { parsed = JSON.parse(text); } catch { /* not JSON */ }
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: parsed });
      });
      res.on('error', reject);
    });
    // `timeoutMs`: a deadline on the whole exchange, the wait for a pooled socket included (a
    // socket timeout would only cover silence on the wire), as a user gives up on a page.
    if (opts.timeoutMs !== undefined) {
      const timer = setTimeout(() => req.destroy(new Error('timeout')), opts.timeoutMs);
      req.on('close', () => clearTimeout(timer));
    }
    req.on('error', reject);
    req.end(payload);
  });
}
