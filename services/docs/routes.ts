// The API description pages every process serves, whatever its targets: GET /asyncapi.json
// (built once from contracts/ and streams/), and GET /docs, Swagger UI on /openapi.json with
// every asset served from here (no CDN): the page, its initializer and the swagger-ui-dist
// files it needs, read from node_modules once and kept gzipped. They are declared in the route
// table like every route: public, 405 with Allow for another method, and in /openapi.json
// (the page's script and files in the table only). The CSP (kit/http/secure-headers.ts)
// allows scripts from this origin only, so the initializer is a file, not an inline script.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { z } from 'zod';
import { HttpError, STREAMS_DIR, type Routes } from '../kit/index.ts';
import { buildAsyncApi } from './asyncapi.ts';

/** The swagger-ui-dist files the page loads, by the name it asks for. */
const ASSETS: Record<string, string> = {
  'swagger-ui.css': 'text/css; charset=utf-8',
  'swagger-ui-bundle.js': 'text/javascript; charset=utf-8',
  'favicon-32x32.png': 'image/png',
  'favicon-16x16.png': 'image/png',
};

const PAGE = `<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>orderflow API</title>
  <link rel="stylesheet" href="/docs/assets/swagger-ui.css">
  <link rel="icon" type="image/png" href="/docs/assets/favicon-32x32.png" sizes="32x32">
  <link rel="icon" type="image/png" href="/docs/assets/favicon-16x16.png" sizes="16x16">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="/docs/assets/swagger-ui-bundle.js"></script>
  <script src="/docs/init.js"></script>
</body>
</html>
`;

// validatorUrl null: the default sends the document to validator.swagger.io (and the CSP would block it).
const INIT = `window.addEventListener('load', function () {
  window.ui = SwaggerUIBundle({
    url: '/openapi.json',
    dom_id: '#swagger-ui',
    deepLinking: true,
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis],
    layout: 'BaseLayout'
  });
});
`;

type Asset = { type: string; raw: Buffer; gzip: Buffer };

/** `docsRoutes(routes, { version: '0.1.0' })` */
export function docsRoutes(routes: Routes, opts: { version: string; streamsDir?: string }): void {
  const asyncapi = JSON.stringify(buildAsyncApi({ streamsDir: opts.streamsDir ?? STREAMS_DIR, version: opts.version }));
  const dist = (createRequire(import.meta.url)('swagger-ui-dist/absolute-path.js') as () => string)();
  // Read on first use: a process nobody asks for docs never holds the 2 MB.
  const cache = new Map<string, Asset>();
  const asset = (name: string, type: string, read: () => Buffer): Asset => {
    let a = cache.get(name);
    if (!a) {
      const raw = read();
      a = { type, raw, gzip: gzipSync(raw) };
      cache.set(name, a);
    }
    return a;
  };
  const send = (accept: string | undefined, a: Asset, cacheControl: string) => {
    const gz = /\bgzip\b/.test(accept ?? '') && !a.type.startsWith('image/');
    return new Response(new Uint8Array(gz ? a.gzip : a.raw), {
      headers: { 'content-type': a.type, 'cache-control': cacheControl, vary: 'Accept-Encoding', ...(gz ? { 'content-encoding': 'gzip' } : {}) },
    });
  };

  const tags = ['docs'];
  routes.add({
    method: 'GET', path: '/asyncapi.json', tags, summary: 'The AsyncAPI 3 document of every NATS subject, with its stream and payload schema', access: 'public',
    responses: { 200: { description: 'the document', schema: z.object({ asyncapi: z.string() }).loose() } },
    handler: (c) => c.body(asyncapi, 200, { 'content-type': 'application/json; charset=utf-8' }),
  });
  const page = (accept: string | undefined) => send(accept, asset('page', 'text/html; charset=utf-8', () => Buffer.from(PAGE)), 'no-cache');
  routes.add({
    method: 'GET', path: '/docs', tags, summary: 'Interactive API docs (Swagger UI on /openapi.json, every asset served from here)', access: 'public',
    responses: { 200: { description: 'the page', type: 'html' } }, handler: (c) => page(c.req.header('accept-encoding')),
  });
  const hidden = { tags, access: 'public' as const, document: false as const };
  routes.add({ ...hidden, method: 'GET', path: '/docs/', summary: 'The docs page', responses: { 200: { description: 'the page', type: 'html' } }, handler: (c) => page(c.req.header('accept-encoding')) });
  routes.add({
    ...hidden, method: 'GET', path: '/docs/init.js', summary: "The docs page's initializer", responses: { 200: { description: 'the script', type: 'text' } },
    handler: (c) => send(c.req.header('accept-encoding'), asset('init', 'text/javascript; charset=utf-8', () => Buffer.from(INIT)), 'no-cache'),
  });
  routes.add({
    ...hidden, method: 'GET', path: '/docs/assets/{name}', summary: "The docs page's swagger-ui files", responses: { 200: { description: 'the file', type: 'binary' } }, errors: [404],
    handler: (c) => {
      const name = c.req.param('name') ?? '';
      const type = Object.hasOwn(ASSETS, name) ? ASSETS[name] : undefined;
      // Thrown, not c.notFound(): the app's not-found answer would say 405, the path being a known one.
      if (!type) throw new HttpError(404, 'NOT_FOUND', 'no such file');
      // The files change only with the swagger-ui-dist version, which changes only with a new image.
      return send(c.req.header('accept-encoding'), asset(name, type, () => readFileSync(join(dist, name))), 'public, max-age=3600');
    },
  });
}
