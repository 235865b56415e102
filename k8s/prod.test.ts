// The production overlay, checked offline: it renders, every object validates against the
// Kubernetes, KEDA and Prometheus Operator schemas from npm (CloudNativePG has no npm models:
// its objects are checked structurally here), and the workload policy holds.
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { parse, parseAllDocuments } from 'yaml';
import { ruleFiles } from '../ops/promql.ts';
import { registry } from '../services/main.ts';
import { readSpecs, STREAMS_DIR } from '../services/kit/provision.ts';
import { policyViolations, type K8sObject } from './policy.ts';

const root = new URL('../', import.meta.url).pathname;
const hasKubectl = (() => { try { execFileSync('kubectl', ['kustomize', '--help'], { stdio: 'ignore' }); return true; } catch { return false; } })();
const render = (overlay: string): K8sObject[] =>
  parseAllDocuments(execFileSync('kubectl', ['kustomize', `${root}k8s/overlays/${overlay}`], { encoding: 'utf8' })).map((d) => d.toJSON()).filter(Boolean);

/** The npm model class for an object, or undefined when no package models it. */
async function modelFor(o: K8sObject): Promise<(new (data: unknown) => { validate(): void }) | undefined> {
  const [group, version] = o.apiVersion.includes('/') ? o.apiVersion.split('/') : ['', o.apiVersion];
  // Each package exports one module per API group version, holding a class per kind.
  const path = group === 'keda.sh' ? `@kubernetes-models/keda/keda.sh/${version}`
    : group === 'monitoring.coreos.com' ? `@kubernetes-models/prometheus-operator/monitoring.coreos.com/${version}`
      : group === 'postgresql.cnpg.io' ? undefined
        : `kubernetes-models/${group ? `${group}/` : ''}${version}`;
  if (!path) return undefined;
  const Model = ((await import(path)) as Record<string, new (data: unknown) => { validate(): void }>)[o.kind];
  if (!Model) throw new Error(`${path} has no ${o.kind}`);
  return Model;
}

/** CloudNativePG Cluster and Pooler: the fields the operator requires and the ones we rely on. */
function cnpgProblems(o: K8sObject, all: K8sObject[]): string[] {
  const p: string[] = [];
  if (o.apiVersion !== 'postgresql.cnpg.io/v1') p.push(`${o.kind}/${o.metadata.name}: apiVersion ${o.apiVersion}`);
  if (o.kind === 'Cluster') {
    if (!Number.isInteger(o.spec?.instances) || o.spec.instances < 3) p.push('Cluster: spec.instances must be an integer >= 3');
    if (!/^\d+[GMT]i$/.test(o.spec?.storage?.size ?? '')) p.push('Cluster: spec.storage.size must be a quantity');
    if (!o.spec?.bootstrap?.initdb?.database) p.push('Cluster: spec.bootstrap.initdb.database is required');
    if (!/:[\w.-]+$/.test(o.spec?.imageName ?? '') || /:latest$/.test(o.spec.imageName)) p.push('Cluster: spec.imageName must be pinned');
  } else if (o.kind === 'Pooler') {
    if (!all.some((c) => c.kind === 'Cluster' && c.metadata.name === o.spec?.cluster?.name)) p.push('Pooler: spec.cluster.name names no Cluster');
    if (!['rw', 'ro', 'r'].includes(o.spec?.type)) p.push('Pooler: spec.type must be rw, ro or r');
    if (!['session', 'transaction'].includes(o.spec?.pgbouncer?.poolMode)) p.push('Pooler: spec.pgbouncer.poolMode must be session or transaction');
  } else {
    p.push(`${o.kind}: not a CloudNativePG kind this test knows`);
  }
  return p;
}

/** What fails its schema: the npm models' validate(), or the structural CloudNativePG check. */
async function schemaProblems(objs: K8sObject[]): Promise<string[]> {
  const problems: string[] = [];
  for (const o of objs) {
    const Model = await modelFor(o);
    if (!Model) { problems.push(...cnpgProblems(o, objs)); continue; }
    try { new Model(o).validate(); } catch (err) { problems.push(`${o.kind}/${o.metadata.name}: ${(err as Error).message}`); }
  }
  return problems;
}

describe.runIf(hasKubectl)('k8s/overlays/prod', () => {
  let objs: K8sObject[];
  const byKind = (kind: string) => objs.filter((o) => o.kind === kind);
  beforeAll(() => { objs = render('prod'); });

  it('every object validates against its schema (Kubernetes, KEDA, Prometheus Operator; CloudNativePG structurally)', async () => {
    expect(await schemaProblems(objs)).toEqual([]);
    expect(byKind('Cluster')).toHaveLength(1);
    expect(byKind('Pooler')).toHaveLength(1);
  });

  it('the schemas have teeth: a malformed Deployment and ScaledObject are refused', async () => {
    const dep = structuredClone(byKind('Deployment')[0]!);
    dep.spec.replicas = 'three';
    await expect((async () => new (await modelFor(dep))!(dep).validate())()).rejects.toThrow();
    const so = structuredClone(byKind('ScaledObject')[0]!);
    delete so.spec.scaleTargetRef;
    await expect((async () => new (await modelFor(so))!(so).validate())()).rejects.toThrow();
  });

  it('passes the workload policy', () => {
    expect(policyViolations(objs)).toEqual([]);
  });

  it('the policy fails a Deployment without probes, requests, PDB or securityContext', () => {
    const name = 'orderflow-orders';
    const without = (edit: (d: any) => void, dropPdb = false) => {
      const copy = structuredClone(objs).filter((o) => !(dropPdb && o.kind === 'PodDisruptionBudget' && o.metadata.name === name));
      edit(copy.find((o) => o.kind === 'Deployment' && o.metadata.name === name)!.spec.template.spec);
      return policyViolations(copy);
    };
    expect(without((s) => { delete s.containers[0].livenessProbe; delete s.containers[0].startupProbe; })).toEqual([
      `Deployment/${name}: container orderflow has no startupProbe`, `Deployment/${name}: container orderflow has no livenessProbe`]);
    expect(without((s) => { delete s.containers[0].resources.requests; })).toEqual([
      `Deployment/${name}: container orderflow has no cpu request`, `Deployment/${name}: container orderflow has no memory request`]);
    expect(without(() => {}, true)).toEqual([`Deployment/${name} has no PodDisruptionBudget`]);
    expect(without((s) => { delete s.securityContext; delete s.containers[0].securityContext; })).toHaveLength(5);
    expect(without((s) => { s.containers[0].image = 'ghcr.io/orderflow/orderflow:latest'; })).toEqual([
      `Deployment/${name}: container orderflow: image ghcr.io/orderflow/orderflow:latest is not pinned`]);
  });

  it('one public entry: an Ingress with a class and TLS, to the gateway Service only', () => {
    const ingresses = byKind('Ingress');
    expect(ingresses).toHaveLength(1);
    const ing = ingresses[0]!;
    expect(ing.spec.ingressClassName).toBeTruthy();
    expect(ing.spec.tls[0].secretName).toBeTruthy();
    const backends = ing.spec.rules.flatMap((r: any) => r.http.paths.map((p: any) => p.backend.service.name));
    expect(new Set(backends)).toEqual(new Set(['orderflow-gateway']));
    expect(byKind('Service').filter((s) => s.spec.type === 'LoadBalancer' || s.spec.type === 'NodePort')).toEqual([]);
  });

  it('denies by default and opens only what is named', () => {
    const deny = byKind('NetworkPolicy').find((n) => Object.keys(n.spec.podSelector).length === 0 && !n.spec.ingress && !n.spec.egress);
    expect(deny?.spec.policyTypes.sort()).toEqual(['Egress', 'Ingress']);
    expect(byKind('NetworkPolicy').length).toBeGreaterThanOrEqual(5);
  });

  it('each target scales: an HPA or a KEDA ScaledObject on its durables\' lag, never both', () => {
    const durables = new Set(readSpecs(STREAMS_DIR).consumers.map((c) => `${c.stream}/${c.config.durable_name}`));
    for (const target of Object.keys(registry)) {
      const name = `orderflow-${target}`;
      const hpa = byKind('HorizontalPodAutoscaler').filter((h) => h.spec.scaleTargetRef.name === name);
      const so = byKind('ScaledObject').filter((s) => s.spec.scaleTargetRef.name === name);
      expect(hpa.length + so.length, target).toBe(1);
      for (const s of so) {
        const js = s.spec.triggers.filter((t: any) => t.type === 'nats-jetstream');
        expect(js.length, target).toBeGreaterThan(0);
        for (const t of js) {
          expect(durables.has(`${t.metadata.stream}/${t.metadata.consumer}`), `${target}: ${t.metadata.stream}/${t.metadata.consumer}`).toBe(true);
          // Only the consumer's leader reports lag accurately: the scaler must be able to reach it by name.
          expect(t.metadata.natsServerMonitoringEndpoint).toMatch(/^nats-headless\./);
        }
      }
    }
  });

  it('config and secrets are split; production mode; streams replicated three times', () => {
    const cm = byKind('ConfigMap').find((c) => c.metadata.name === 'orderflow-config')!;
    expect(cm.data!.ORDERFLOW_ENV).toBe('production');
    expect(cm.data!.NATS_STREAM_REPLICAS).toBe('3');
    const secretKeys = ['DATABASE_URL', 'PAYMENT_TOKEN_KEY', 'KEY_ENCRYPTION_KEY', 'ADMIN_EMAIL', 'ADMIN_PASSWORD', 'T24_URL', 'PAYMENT_GATEWAY_URL', 'SMTP_URL', 'SMS_URL'];
    for (const k of secretKeys) expect(cm.data, k).not.toHaveProperty(k);
    const example = readFileSync(`${root}k8s/overlays/prod/secrets.example.env`, 'utf8');
    const listed = new Set(example.split('\n').filter((l) => /^[A-Z0-9_]+=/.test(l)).map((l) => l.split('=')[0]));
    expect([...listed].sort()).toEqual([...secretKeys].sort());
    for (const d of byKind('Deployment').filter((x) => x.metadata.labels?.['app.kubernetes.io/name'] === 'orderflow')) {
      expect(d.spec.template.spec.containers[0].envFrom).toContainEqual({ secretRef: { name: 'orderflow-secrets', optional: false } });
    }
  });

  it('Prometheus Operator: a PodMonitor per target and the rules of ops/alerts as a PrometheusRule', () => {
    for (const target of Object.keys(registry)) {
      expect(byKind('PodMonitor').some((p) => p.spec.selector.matchLabels['app.kubernetes.io/component'] === target), target).toBe(true);
    }
    const rules = byKind('PrometheusRule').flatMap((r) => r.spec.groups);
    expect(rules).toEqual(ruleFiles().flatMap((f) => f.groups));
  });

  it('pods export traces to the OpenTelemetry Collector', () => {
    const cm = byKind('ConfigMap').find((c) => c.metadata.name === 'orderflow-config')!;
    const collector = objs.find((o) => o.metadata.name === 'otel-collector' && o.kind === 'Service')!;
    expect(cm.data!.OTEL_EXPORTER_OTLP_ENDPOINT).toBe(`http://${collector.metadata.name}:${collector.spec.ports.find((p: any) => p.name === 'otlp-http').port}`);
  });
});

describe('k8s/overlays/prod/nats-values.yaml (official NATS Helm chart)', () => {
  const values = parse(readFileSync(`${root}k8s/overlays/prod/nats-values.yaml`, 'utf8'));
  it('runs three clustered JetStream servers that sync every write, with monitoring for KEDA', () => {
    expect(values.config.cluster).toMatchObject({ enabled: true, replicas: 3 });
    expect(values.config.jetstream.enabled).toBe(true);
    expect(values.config.jetstream.merge.sync_interval).toBe('always');
    expect(values.config.monitor).toMatchObject({ enabled: true, port: 8222 });
    expect(values.container.image.tag).toMatch(/^2\.(1[1-9]|[2-9]\d)\.\d+/);
  });
});

describe.runIf(hasKubectl)('k8s/overlays/dev', () => {
  it('passes the workload policy too (the hardening lives in the base)', () => {
    // dev's image is built locally as orderflow:dev: a tag, never latest.
    expect(policyViolations(render('dev'))).toEqual([]);
  });
});

/** Every manifest file under k8s/ as written (kustomizations and Helm values left out). */
function manifestFiles(dir = `${root}k8s`): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const path = join(dir, e.name);
    if (e.isDirectory()) return manifestFiles(path);
    return e.name.endsWith('.yaml') && e.name !== 'kustomization.yaml' && !e.name.endsWith('-values.yaml') ? [path] : [];
  });
}

// Without kubectl (a fresh machine: Debian's kubectl is too old for k8s/), the files are still
// checked one by one, as written, before kustomize puts them together.
describe('every manifest file under k8s/, as written', () => {
  const objs = manifestFiles().flatMap((f) => parseAllDocuments(readFileSync(f, 'utf8')).map((d) => d.toJSON() as K8sObject).filter(Boolean));

  it('validates against its schema', async () => {
    expect(await schemaProblems(objs)).toEqual([]);
    expect(objs.filter((o) => o.kind === 'Deployment').length).toBeGreaterThanOrEqual(Object.keys(registry).length);
  });

  it('the base workloads pass the policy (the image is pinned by kustomize\'s images, checked on the rendered overlay)', () => {
    expect(policyViolations(objs).filter((v) => !v.endsWith('is not pinned'))).toEqual([]);
  });
});

