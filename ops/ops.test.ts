// Dashboards, alert rules and the runbook as code: every metric they query is one the cluster
// exports, promtool accepts and unit-tests the rules, every alert has its runbook section, and
// the Kubernetes copies of rules and dashboards are current.
import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { applicationBody, waitForStatus } from '../services/funding/test-fixtures.ts';
import { eventually, startTestCluster, type TestCluster } from '../services/testing/index.ts';
import { GENERATED, renderMonitoring } from './generate.ts';
import { ALERTS_DIR, allQueries, dashboards, exportedNames, metricNames, ruleFiles, ruleTestFiles } from './promql.ts';

const root = new URL('../', import.meta.url).pathname;
const hasPromtool = (() => { try { execFileSync('promtool', ['--version'], { stdio: 'ignore' }); return true; } catch { return false; } })();
const alerts = () => ruleFiles().flatMap((f) => f.groups.flatMap((g) => g.rules.filter((r) => r.alert)));
const RUNBOOK = 'https://github.com/orderflow/orderflow/blob/main/docs/runbook.md';

describe('metricNames', () => {
  it('finds the metrics of an expression and nothing else', () => {
    expect(metricNames('histogram_quantile(0.95, sum by (le, route) (rate(orderflow_x_bucket{route=~"/a(b)", job=~"$job"}[$__rate_interval]))) > 0.2')).toEqual(['orderflow_x_bucket']);
    expect(metricNames('max by (a) (foo offset 15m) / ignoring (state) bar:rate5m and on (x) group_left (y) baz unless qux == bool 1').sort())
      .toEqual(['bar:rate5m', 'baz', 'foo', 'qux']);
    expect(metricNames('sum(rate(a_total[5m])) / sum without (pod) (b)')).toEqual(['a_total', 'b']);
  });

  it('reads histogram and summary series from the exposition text', () => {
    const names = exportedNames('# HELP h x\n# TYPE h histogram\n# TYPE s summary\n# TYPE c_total counter\ng{a="b"} 1\n');
    expect([...names].sort()).toEqual(['c_total', 'g', 'h_bucket', 'h_count', 'h_sum', 's', 's_count', 's_sum']);
  });
});

describe('every metric a dashboard or rule queries is exported by the cluster (TARGET=all)', () => {
  let c: TestCluster;
  let exported: Set<string>;
  beforeAll(async () => {
    c = await startTestCluster({});
    const res = await fetch(`${c.url}/metrics`);
    expect(res.status).toBe(200);
    exported = exportedNames(await res.text());
  });
  afterAll(async () => { await c?.close(); });

  it('finds queries in every rule file and dashboard', () => {
    const queries = allQueries();
    expect(alerts().length).toBeGreaterThanOrEqual(13);
    expect(dashboards().map((d) => d.dashboard.uid).sort()).toEqual(['orderflow-business', 'orderflow-jetstream', 'orderflow-node', 'orderflow-service-red']);
    expect(queries.length).toBeGreaterThan(50);
  });

  it('has no query naming a metric /metrics lacks', () => {
    const missing = allQueries().flatMap(({ where, expr }) => metricNames(expr).filter((m) => !exported.has(m)).map((m) => `${where}: ${m}`));
    expect(missing).toEqual([]);
    // The check has teeth: a name the cluster does not export is caught.
    expect(exported.has('orderflow_no_such_metric_total')).toBe(false);
  });

  it('the event-based and scrape-time series move with the flows', async () => {
    /** One sample of the scrape, 0 when absent. */
    const sample = async (name: string, labels: Record<string, string> = {}) => {
      const want = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
      const line = (await (await fetch(`${c.url}/metrics`)).text()).split('\n')
        .find((l) => (l.startsWith(`${name}{`) || l.startsWith(`${name} `)) && want.every((w) => l.includes(w)));
      return line ? Number(line.slice(line.lastIndexOf(' ') + 1)) : 0;
    };
    expect((await c.post('/api/products', { sku: 'OPS-1', name: 'Cup', description: 'A cup', priceCents: 500, currency: 'EUR', stock: 5 })).status).toBe(201);
    const order = await c.post('/api/orders', { orderId: 'OPS-1001', email: 'ops@example.com', paymentToken: 'tok_visa', items: [{ sku: 'OPS-1', quantity: 1 }] });
    expect(order.status).toBe(202);
    await eventually(async () => (await c.get(`/api/orders/${order.body.id}`)).body.status === 'SHIPPED', { what: 'order shipped' });
    // Mails: the received and shipped ones, each one SMTP hand-over.
    await eventually(async () => (await sample('orderflow_mail_delivery_seconds_count', { result: 'ok' })) >= 2, { what: 'two mails timed' });
    // Saga steps, ending in DONE.
    expect(await sample('orderflow_saga_step_duration_seconds_count', { step: 'RESERVING', next: 'CHARGING' })).toBe(1);
    expect(await sample('orderflow_saga_step_duration_seconds_count', { step: 'SHIPPING', next: 'DONE' })).toBe(1);
    // Breakers of every external system that has one.
    for (const [system, client] of [['payment-gateway', 'payments'], ['payment-gateway', 'funding'], ['t24', 'lending']]) {
      expect(await sample('orderflow_breaker_state', { system: system!, client: client!, state: 'closed' }), `${system} of ${client}`).toBe(1);
      expect(await sample('orderflow_breaker_state', { system: system!, client: client!, state: 'open' })).toBe(0);
    }
    // Status cache reads: a read of a known application's status is a hit or a miss, and counted.
    const app = await c.post('/api/funding/applications', applicationBody());
    expect(app.status).toBe(202);
    await waitForStatus(c.get, app.body.id, ['approved', 'disbursed', 'pending_review', 'rejected', 'disbursing']);
    expect((await c.get(`/api/funding/applications/${app.body.id}/status`)).status).toBe(200);
    const reads = async () => (await sample('orderflow_status_cache_reads_total', { result: 'hit' })) + (await sample('orderflow_status_cache_reads_total', { result: 'miss' }));
    expect(await reads()).toBeGreaterThanOrEqual(1);
    // Scrape-time business counts (read at most every 5 s).
    await eventually(async () => (await sample('orderflow_orders', { status: 'SHIPPED' })) === 1, { what: 'orders by status' });
    await eventually(async () => (await sample('orderflow_funding_applications')) >= 1, { what: 'applications by status' });
    expect(await sample('orderflow_db_pool_max')).toBe(10);
  });
});

describe('alert rules', () => {
  const files = ruleFiles().map((f) => `${ALERTS_DIR}/${f.file}`);

  it.runIf(hasPromtool)('pass promtool check rules', () => {
    const r = spawnSync('promtool', ['check', 'rules', ...files], { encoding: 'utf8' });
    expect(r.status, r.stdout + r.stderr).toBe(0);
  });

  it.runIf(hasPromtool)('pass their promtool unit tests', () => {
    const r = spawnSync('promtool', ['test', 'rules', ...ruleTestFiles()], { cwd: ALERTS_DIR, encoding: 'utf8' });
    expect(r.status, r.stdout + r.stderr).toBe(0);
  });

  it.skipIf(hasPromtool)('promtool is missing here: install Debian package `prometheus` (.ci/run does) to check and unit-test the rules', () => {});

  it('each alert has a promtool unit test', () => {
    const tests = ruleTestFiles().map((f) => readFileSync(`${ALERTS_DIR}/${f}`, 'utf8')).join('\n');
    for (const a of alerts()) expect(tests, a.alert).toContain(`alertname: ${a.alert}`);
  });

  it('each alert has severity, a summary, a dashboard panel that exists, and a runbook_url to its own section', () => {
    const runbook = readFileSync(`${root}docs/runbook.md`, 'utf8');
    const sections = new Map(runbook.split(/^## /m).slice(1).map((s) => [s.slice(0, s.indexOf('\n')).trim(), s]));
    const panels = new Map(dashboards().map(({ dashboard }) => [dashboard.uid, new Set(dashboard.panels.map((p) => p.title))]));
    for (const a of alerts()) {
      const name = a.alert!;
      expect(a.labels?.severity, name).toMatch(/^(critical|warning)$/);
      expect(a.annotations?.summary, name).toBeTruthy();
      expect(a.annotations?.runbook_url, name).toBe(`${RUNBOOK}#${name.toLowerCase()}`);
      const section = sections.get(name);
      expect(section, `docs/runbook.md has no "## ${name}"`).toBeDefined();
      const [uid, panel] = a.annotations!.dashboard!.split(' / ');
      expect(panels.get(uid!)?.has(panel!), `${name}: no panel "${panel}" in ${uid}`).toBe(true);
      expect(section, `${name}: the runbook names the panel`).toContain(panel);
      expect(section, `${name}: the runbook gives commands`).toContain('```sh');
      expect(section, `${name}: the runbook says what fixes it`).toContain('**Fix:**');
    }
  });
});

describe('dashboards', () => {
  it('are Grafana dashboards with a uid named after the file and unique panel ids', () => {
    for (const { file, dashboard } of dashboards()) {
      expect(`${dashboard.uid}.json`).toBe(file);
      expect(dashboard.title).toMatch(/^orderflow \/ /);
      const ids = dashboard.panels.map((p) => p.id);
      expect(new Set(ids).size, file).toBe(ids.length);
      for (const p of dashboard.panels.filter((x) => x.type !== 'row')) expect(p.targets?.length, `${file} ${p.title}`).toBeGreaterThan(0);
    }
  });
});

describe('k8s/components/monitoring/generated.yaml', () => {
  it('is what `node ops/generate.ts` renders from ops/ now', () => {
    expect(readFileSync(GENERATED, 'utf8'), 'run `node ops/generate.ts`').toBe(renderMonitoring());
  });
});
