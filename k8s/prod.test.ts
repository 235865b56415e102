// The production overlay, checked offline: it renders, every object validates against the
// Kubernetes, KEDA and Prometheus Operator schemas from npm (CloudNativePG has no npm models:
// its objects are checked structurally here), the workload policy holds, and Postgres is backed up.
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { parse, parseAllDocuments } from 'yaml';
import { ruleFiles } from '../ops/promql.ts';
import { registry } from '../services/main.ts';
import { readSpecs, STREAMS_DIR } from '../services/kit/provision.ts';
import { backupViolations, policyViolations, type K8sObject } from './policy.ts';

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

/** CloudNativePG's cron: six fields, seconds first (`0 0 2 * * *`); a five-field one would run at the wrong time or be refused. */
const CNPG_SCHEDULE = /^(\S+\s+){5}\S+$/;

/** A Cluster's spec.backup, as the CRD constrains it (retentionPolicy's pattern, the enums). */
function cnpgBackupProblems(o: K8sObject): string[] {
  const b = o.spec?.backup;
  if (!b) return [];
  const p: string[] = [];
  const id = `Cluster/${o.metadata.name}`;
  if (b.retentionPolicy !== undefined && !/^[1-9][0-9]*[dwm]$/.test(b.retentionPolicy)) p.push(`${id}: spec.backup.retentionPolicy must look like 30d, 4w or 3m`);
  if (b.target !== undefined && !['primary', 'prefer-standby'].includes(b.target)) p.push(`${id}: spec.backup.target must be primary or prefer-standby`);
  const store = b.barmanObjectStore;
  if (store) {
    if (typeof store.destinationPath !== 'string' || !store.destinationPath) p.push(`${id}: barmanObjectStore.destinationPath is required`);
    for (const [k, ref] of Object.entries(store.s3Credentials ?? {})) {
      if (k === 'inheritFromIAMRole') continue;
      if (typeof (ref as any)?.name !== 'string' || typeof (ref as any)?.key !== 'string') p.push(`${id}: s3Credentials.${k} must be a Secret key reference {name, key}`);
    }
    const compressions = ['bzip2', 'gzip', 'lz4', 'snappy', 'xz', 'zstd'];
    if (store.wal?.compression !== undefined && !compressions.includes(store.wal.compression)) p.push(`${id}: wal.compression ${store.wal.compression} is not one CloudNativePG knows`);
    if (store.data?.compression !== undefined && !compressions.includes(store.data.compression)) p.push(`${id}: data.compression ${store.data.compression} is not one CloudNativePG knows`);
    if (store.wal?.maxParallel !== undefined && !(Number.isInteger(store.wal.maxParallel) && store.wal.maxParallel >= 1)) p.push(`${id}: wal.maxParallel must be an integer >= 1`);
  }
  return p;
}

/** CloudNativePG Cluster, Pooler and ScheduledBackup: the fields the operator requires and the ones we rely on. */
function cnpgProblems(o: K8sObject, all: K8sObject[]): string[] {
  const p: string[] = [];
  if (o.apiVersion !== 'postgresql.cnpg.io/v1') p.push(`${o.kind}/${o.metadata.name}: apiVersion ${o.apiVersion}`);
  if (o.kind === 'Cluster') {
    if (!Number.isInteger(o.spec?.instances) || o.spec.instances < 3) p.push('Cluster: spec.instances must be an integer >= 3');
    if (!/^\d+[GMT]i$/.test(o.spec?.storage?.size ?? '')) p.push('Cluster: spec.storage.size must be a quantity');
    if (!o.spec?.bootstrap?.initdb?.database) p.push('Cluster: spec.bootstrap.initdb.database is required');
    if (!/:[\w.-]+$/.test(o.spec?.imageName ?? '') || /:latest$/.test(o.spec.imageName)) p.push('Cluster: spec.imageName must be pinned');
    p.push(...cnpgBackupProblems(o));
  } else if (o.kind === 'ScheduledBackup') {
    const id = `ScheduledBackup/${o.metadata.name}`;
    const cluster = all.find((c) => c.kind === 'Cluster' && c.metadata.name === o.spec?.cluster?.name);
    if (!cluster) p.push(`${id}: spec.cluster.name names no Cluster`);
    if (!CNPG_SCHEDULE.test(o.spec?.schedule ?? '')) p.push(`${id}: spec.schedule must be a six-field cron (seconds first)`);
    const method = o.spec?.method ?? 'barmanObjectStore';
    if (!['barmanObjectStore', 'volumeSnapshot', 'plugin'].includes(method)) p.push(`${id}: spec.method must be barmanObjectStore, volumeSnapshot or plugin`);
    if (method === 'barmanObjectStore' && cluster && !cluster.spec?.backup?.barmanObjectStore) p.push(`${id}: method barmanObjectStore, but Cluster/${cluster.metadata.name} has no spec.backup.barmanObjectStore`);
    if (o.spec?.backupOwnerReference !== undefined && !['none', 'self', 'cluster'].includes(o.spec.backupOwnerReference)) p.push(`${id}: spec.backupOwnerReference must be none, self or cluster`);
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
    expect(byKind('ScheduledBackup')).toHaveLength(1);
  });

  it('the CloudNativePG checks have teeth: a malformed backup configuration and ScheduledBackup are refused', async () => {
    const edited = (kind: string, edit: (o: any) => void) => {
      const copy = structuredClone(objs);
      edit(copy.find((o) => o.kind === kind)!);
      return copy;
    };
    expect(await schemaProblems(edited('ScheduledBackup', (o) => { o.spec.schedule = '0 2 * * *'; }))).toEqual([
      'ScheduledBackup/orderflow-db-nightly: spec.schedule must be a six-field cron (seconds first)']);
    expect(await schemaProblems(edited('ScheduledBackup', (o) => { o.spec.cluster.name = 'elsewhere'; }))).toEqual([
      'ScheduledBackup/orderflow-db-nightly: spec.cluster.name names no Cluster']);
    expect(await schemaProblems(edited('Cluster', (o) => { o.spec.backup.retentionPolicy = '30 days'; }))).toEqual([
      'Cluster/orderflow-db: spec.backup.retentionPolicy must look like 30d, 4w or 3m']);
    expect(await schemaProblems(edited('Cluster', (o) => { o.spec.backup.barmanObjectStore.s3Credentials.accessKeyId = 'AKIA...'; }))).toEqual([
      'Cluster/orderflow-db: s3Credentials.accessKeyId must be a Secret key reference {name, key}']);
    expect(await schemaProblems(edited('Cluster', (o) => { delete o.spec.backup; }))).toEqual([
      'ScheduledBackup/orderflow-db-nightly: method barmanObjectStore, but Cluster/orderflow-db has no spec.backup.barmanObjectStore']);
  });

  it('Postgres is backed up: WAL archived to object storage with credentials from a Secret, a retention, nightly base backups', () => {
    expect(backupViolations(objs)).toEqual([]);
    const cluster = byKind('Cluster')[0]!;
    const store = cluster.spec.backup.barmanObjectStore;
    expect(store.destinationPath).toMatch(/^(s3|gs|https):\/\//);
    const secrets = new Set([store.s3Credentials.accessKeyId.name, store.s3Credentials.secretAccessKey.name]);
    // The credentials Secret is created out of band, its keys listed beside secrets.example.env.
    expect(byKind('Secret').filter((x) => secrets.has(x.metadata.name))).toEqual([]);
    const example = readFileSync(`${root}k8s/overlays/prod/backup-secrets.example.env`, 'utf8');
    const listed = example.split('\n').filter((l) => /^[A-Z0-9_]+=/.test(l)).map((l) => l.split('=')[0]);
    expect(listed.sort()).toEqual([store.s3Credentials.accessKeyId.key, store.s3Credentials.secretAccessKey.key].sort());
    const nightly = byKind('ScheduledBackup')[0]!;
    expect(nightly.spec.cluster.name).toBe(cluster.metadata.name);
    expect(nightly.metadata.namespace).toBe(cluster.metadata.namespace);
  });

  it('the policy fails the prod overlay without a backup', () => {
    const without = (edit: (copy: K8sObject[]) => K8sObject[]) => policyViolations(edit(structuredClone(objs)));
    const cluster = (copy: K8sObject[]) => copy.find((o) => o.kind === 'Cluster')!;
    expect(without((c) => { delete cluster(c).spec.backup; return c; })).toEqual(['Cluster/orderflow-db has no spec.backup.barmanObjectStore (no WAL archiving)']);
    expect(without((c) => c.filter((o) => o.kind !== 'ScheduledBackup'))).toEqual(['Cluster/orderflow-db has no ScheduledBackup']);
    expect(without((c) => { delete cluster(c).spec.backup.retentionPolicy; return c; })).toEqual(['Cluster/orderflow-db: spec.backup has no retentionPolicy']);
    expect(without((c) => { delete cluster(c).spec.backup.barmanObjectStore.s3Credentials; return c; })).toEqual(['Cluster/orderflow-db: barmanObjectStore has no credentials from a Secret']);
    expect(without((c) => { c.find((o) => o.kind === 'ScheduledBackup')!.spec.suspend = true; return c; })).toEqual(['ScheduledBackup/orderflow-db-nightly is suspended']);
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

