// The alert rules against the real Prometheus binary (Debian package `prometheus`, which
// .ci/run installs): Prometheus scrapes a running cluster, evaluates ops/alerts as shipped,
// and an alert fires when the cluster's state calls for it and resolves when an operator
// has dealt with it. promtool's unit tests (ops.test.ts) check the rules' logic on made-up
// series; this checks the rules, the metric names and the scrape together.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDlqAdmin } from '../services/kit/index.ts';
import { sendToDlq } from '../services/kit/dlq.ts';
import { eventually, freePort, startTestCluster, type TestCluster } from '../services/testing/index.ts';
import { ALERTS_DIR } from './promql.ts';

const hasPrometheus = (() => { try { execFileSync('prometheus', ['--version'], { stdio: 'ignore' }); return true; } catch { return false; } })();

type Alert = { labels: Record<string, string>; state: 'pending' | 'firing' };

describe.runIf(hasPrometheus)('alert rules in a real Prometheus', () => {
  let c: TestCluster;
  let prom: ChildProcess;
  let promUrl: string;
  let dir: string;
  let promLog = '';

  beforeAll(async () => {
    c = await startTestCluster({ TARGET: 'admin' });
    dir = mkdtempSync(join(tmpdir(), 'orderflow-prom-'));
    // The shipped rule file, unchanged; only the intervals are short so the test is quick.
    writeFileSync(join(dir, 'prometheus.yml'), [
      'global: {scrape_interval: 1s, evaluation_interval: 1s}',
      `rule_files: ['${join(ALERTS_DIR, 'orderflow.rules.yaml')}']`,
      'scrape_configs:',
      '  - job_name: orderflow',
      `    static_configs: [{targets: ['127.0.0.1:${c.port}'], labels: {target: admin}}]`,
    ].join('\n'));
    const port = await freePort();
    promUrl = `http://127.0.0.1:${port}`;
    prom = spawn('prometheus', [
      `--config.file=${join(dir, 'prometheus.yml')}`, `--storage.tsdb.path=${join(dir, 'data')}`,
      `--web.listen-address=127.0.0.1:${port}`, '--log.level=warn',
    ], { stdio: ['ignore', 'pipe', 'pipe'] });
    prom.stdout!.on('data', (d) => { promLog = (promLog + d).slice(-10_000); });
    prom.stderr!.on('data', (d) => { promLog = (promLog + d).slice(-10_000); });
    await eventually(async () => (await fetch(`${promUrl}/-/ready`)).ok, { what: `Prometheus ready (${promLog})`, timeoutMs: 60_000 });
  });
  afterAll(async () => {
    prom?.kill('SIGTERM');
    await c?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const alerts = async (): Promise<Alert[]> => {
    const body = await (await fetch(`${promUrl}/api/v1/alerts`)).json() as { data: { alerts: Alert[] } };
    return body.data.alerts;
  };

  it('loads every shipped rule and scrapes the cluster', async () => {
    await eventually(async () => {
      const t = await (await fetch(`${promUrl}/api/v1/targets`)).json() as { data: { activeTargets: { health: string }[] } };
      return t.data.activeTargets.length === 1 && t.data.activeTargets[0]!.health === 'up';
    }, { what: 'the cluster scraped', timeoutMs: 60_000 });
    const rules = await (await fetch(`${promUrl}/api/v1/rules`)).json() as { data: { groups: { rules: { name: string; health: string; lastError?: string }[] }[] } };
    const all = rules.data.groups.flatMap((g) => g.rules);
    expect(all.length).toBeGreaterThanOrEqual(13);
    await eventually(async () => {
      const r = await (await fetch(`${promUrl}/api/v1/rules`)).json() as typeof rules;
      const bad = r.data.groups.flatMap((g) => g.rules).filter((x) => x.health !== 'ok');
      if (bad.length) throw new Error(`rules not ok: ${JSON.stringify(bad)}`);
      return true;
    }, { what: 'every rule evaluated without error', timeoutMs: 30_000 });
  });

  it('fires OrderflowDlqGrowing when a message dies, and resolves it once the entry is dealt with', async () => {
    const stream = `E2E${Date.now() % 100_000}`;
    expect((await alerts()).filter((a) => a.labels.alertname === 'OrderflowDlqGrowing' && a.labels.stream === stream)).toEqual([]);
    await sendToDlq(c.deps.nats.js, {
      stream, consumer: 'worker', subject: 'e2e.poison', seq: 1, deliveries: 5, reason: 'max-deliveries', error: 'boom',
      data: new TextEncoder().encode('{"n":1}'),
    });
    const firing = await eventually(async () => {
      const a = (await alerts()).find((x) => x.labels.alertname === 'OrderflowDlqGrowing' && x.labels.stream === stream);
      if (a?.state !== 'firing') throw new Error(`not firing yet: ${JSON.stringify(a)}`);
      return a;
    }, { what: 'the DLQ alert firing', timeoutMs: 60_000 });
    expect(firing.labels).toMatchObject({ consumer: 'worker', severity: 'warning' });

    // The operator deals with it (here: deletes it; a redrive empties it the same way).
    const dlq = createDlqAdmin(c.deps.nats);
    const entries = (await dlq.list({ stream })).filter((e) => e.stream === stream);
    expect(entries).toHaveLength(1);
    expect(await dlq.remove(entries[0]!.id)).toBe(true);
    await eventually(async () => {
      const a = (await alerts()).find((x) => x.labels.alertname === 'OrderflowDlqGrowing' && x.labels.stream === stream);
      if (a) throw new Error(`still ${a.state}`);
      return true;
    }, { what: 'the DLQ alert resolved', timeoutMs: 60_000 });
  });
});
