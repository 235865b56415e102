// An app with the kit's middleware, served on a loopback port, for the tests beside each file.
import { connect, type AddressInfo } from 'node:net';
import { serve } from '@hono/node-server';
import { createLogger, createMetrics } from '../kit/index.ts';
import { answerMalformedRequests, createApp, type App } from '../kit/http.ts';

/** `const t = await serveTestApp((app) => app.post('/echo', ...)); await t.raw('GET / HTTP/1.1\r\n\r\n'); await t.close()` */
export async function serveTestApp(mount: (app: App) => void, opts: Partial<Pick<Parameters<typeof createApp>[0], 'maxBodyBytes' | 'admission' | 'metrics'>> = {}) {
  const app = createApp({ log: createLogger({ level: 'silent' }), metrics: createMetrics(), readiness: async () => [], ...opts });
  mount(app);
  const server = await new Promise<ReturnType<typeof serve>>((resolve) => {
    const s = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' }, () => resolve(s));
  });
  answerMalformedRequests(server);
  const port = (server.address() as AddressInfo).port;
  return {
    app, port, url: `http://127.0.0.1:${port}`,
    /** Send raw bytes and read the whole answer (the server closes the connection). */
    raw: (request: string) => new Promise<string>((resolve, reject) => {
      const s = connect(port, '127.0.0.1', () => s.end(request));
      let out = '';
      s.on('data', (d) => { out += d; });
      s.on('end', () => resolve(out));
      s.on('error', reject);
    }),
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
