// GET /docs: Swagger UI whose every asset this cluster serves (no CDN), under the CSP of
// kit/http/secure-headers.ts. /openapi.json is another module's; here it is a stub.
import { existsSync } from 'node:fs';
import { get } from 'node:http';
import { gunzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRoutes, createRouteTable, notFoundOrNotAllowed } from '../kit/http.ts';
import { openApiDocument } from '../kit/http/openapi.ts';
import { serveTestApp } from '../testing/index.ts';
import { docsRoutes } from './routes.ts';

const STUB_OPENAPI = {
  openapi: '3.1.0', info: { title: 'orderflow stub API', version: '0.0.0' },
  paths: { '/api/orders/{id}': { get: { operationId: 'getOrder', summary: 'An order', parameters: [{ name: 'id', in: 'path', required: true, schema: { type: 'string' } }], responses: { 200: { description: 'the order' } } } } },
};

let t: Awaited<ReturnType<typeof serveTestApp>>;
const table = createRouteTable();
beforeAll(async () => {
  t = await serveTestApp((app) => {
    docsRoutes(createRoutes({ app, table }), { version: '0.0.0' });
    app.get('/openapi.json', (c) => c.json(STUB_OPENAPI));
    app.notFound(notFoundOrNotAllowed(table));
  });
});
afterAll(async () => { await t?.close(); });

/** Every src and href of a page. */
const references = (html: string) => [...html.matchAll(/\b(?:src|href)="([^"]*)"/g)].map((m) => m[1]!);
const TYPES: Record<string, RegExp> = { css: /^text\/css/, js: /^text\/javascript/, png: /^image\/png$/ };

describe('GET /docs', () => {
  it('is an HTML page whose every asset is on this origin, each answering 200 with its content type', async () => {
    const res = await fetch(`${t.url}/docs`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/html/);
    const html = await res.text();
    // The CSP allows no inline script: every script is a file.
    expect([...html.matchAll(/<script\b([^>]*)>/g)].every((m) => /\bsrc="/.test(m[1]!))).toBe(true);
    const refs = references(html);
    expect(refs.length).toBeGreaterThanOrEqual(4);
    for (const ref of refs) {
      expect(ref, ref).toMatch(/^\/(?!\/)/); // a path on this origin: no scheme, no //host
      const asset = await fetch(new URL(ref, t.url), { headers: { 'accept-encoding': 'identity' } });
      expect(asset.status, ref).toBe(200);
      expect(asset.headers.get('content-type'), ref).toMatch(TYPES[ref.split('.').pop()!]!);
      expect((await asset.arrayBuffer()).byteLength, ref).toBeGreaterThan(0);
    }
    expect((await (await fetch(`${t.url}/docs/`)).text())).toBe(html);
  });

  it('loads /openapi.json from the same origin, and sends nothing to a validator elsewhere', async () => {
    const init = await (await fetch(`${t.url}/docs/init.js`)).text();
    expect(init).toContain("url: '/openapi.json'");
    expect(init).toContain('validatorUrl: null');
  });

  it('sends the big bundle gzipped to clients that take it', async () => {
    // fetch decodes gzip by itself; node:http does not.
    const gz = await new Promise<{ headers: Record<string, unknown>; body: Buffer }>((resolve, reject) => {
      get(`${t.url}/docs/assets/swagger-ui-bundle.js`, { headers: { 'accept-encoding': 'gzip' } }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (d: Buffer) => chunks.push(d));
        res.on('end', () => resolve({ headers: res.headers, body: Buffer.concat(chunks) }));
      }).on('error', reject);
    });
    expect(gz.headers['content-encoding']).toBe('gzip');
    expect(gz.headers.vary).toMatch(/Accept-Encoding/);
    const identity = await fetch(`${t.url}/docs/assets/swagger-ui-bundle.js`, { headers: { 'accept-encoding': 'identity' } });
    expect(identity.headers.get('content-encoding')).toBeNull();
    const plain = Buffer.from(await identity.arrayBuffer());
    expect(gz.body.length).toBeLessThan(plain.length / 2);
    expect(gunzipSync(gz.body).equals(plain)).toBe(true);
  });

  it('serves only the files the page uses: no other file of the package, no path out of it', async () => {
    for (const path of ['/docs/assets/index.html', '/docs/assets/swagger-ui.js.map', '/docs/assets/package.json', '/docs/assets/..%2f..%2fpackage.json', '/docs/assets/toString', '/docs/assets/']) {
      const res = await fetch(`${t.url}${path}`);
      expect(res.status, path).toBe(404);
      expect((await res.json()).error.code, path).toBe('NOT_FOUND');
    }
  });
});

describe('the docs routes in the route table', () => {
  it('answers another method with 405 and Allow, as every declared route', async () => {
    for (const path of ['/docs', '/docs/', '/asyncapi.json', '/docs/init.js', '/docs/assets/swagger-ui.css']) {
      const res = await fetch(`${t.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
      expect([res.status, res.headers.get('allow'), (await res.json()).error.code], path).toEqual([405, 'GET, HEAD', 'METHOD_NOT_ALLOWED']);
    }
    expect((await fetch(`${t.url}/docs`, { method: 'HEAD' })).status).toBe(200);
  });

  it('documents /docs and /asyncapi.json as public in /openapi.json, not the page\'s script and files', () => {
    const doc = openApiDocument(table) as { paths: Record<string, Record<string, { security: unknown[]; responses: Record<string, { content?: object }> }>> };
    expect(Object.keys(doc.paths).sort()).toEqual(['/asyncapi.json', '/docs']);
    expect(doc.paths['/docs']!.get!.security).toEqual([]);
    expect(Object.keys(doc.paths['/docs']!.get!.responses['200']!.content!)).toEqual(['text/html']);
    expect(doc.paths['/asyncapi.json']!.get!.security).toEqual([]);
  });
});

// Headless Chromium (Debian's `chromium`; .ci/run installs it): the page renders the document
// under the real CSP, and every request it makes stays on this origin.
describe.runIf(existsSync('/usr/bin/chromium'))('GET /docs in a browser', () => {
  it('renders the operations of /openapi.json with no CSP violation and no request elsewhere', async () => {
    const { chromium } = await import('playwright-core');
    const browser = await chromium.launch({
      executablePath: '/usr/bin/chromium',
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    try {
      const page = await browser.newPage();
      const requests: string[] = [];
      const problems: string[] = [];
      page.on('request', (r) => requests.push(r.url()));
      page.on('console', (m) => { if (m.type() === 'error') problems.push(m.text()); });
      page.on('pageerror', (e) => problems.push(String(e)));
      await page.addInitScript(() => document.addEventListener('securitypolicyviolation', (e) => console.error(`CSP: ${e.violatedDirective} ${e.blockedURI}`)));
      await page.goto(`${t.url}/docs`);
      await page.locator('.swagger-ui .info .title').filter({ hasText: 'orderflow stub API' }).waitFor({ timeout: 30_000 });
      await page.locator('.opblock-summary-path', { hasText: '/api/orders/{id}' }).waitFor({ timeout: 30_000 });
      expect(problems).toEqual([]);
      expect(requests.length).toBeGreaterThan(3);
      for (const url of requests) expect(url.startsWith(`${t.url}/`) || url.startsWith('data:'), url).toBe(true);
      expect(requests).toContain(`${t.url}/openapi.json`);
    } finally {
      await browser.close();
    }
  }, 60_000);
});
