// There is no Docker engine or cluster here: the deployment files are checked by parsing
// them and by `kubectl kustomize`, which works offline.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parse, parseAllDocuments } from 'yaml';
import { registry } from '../services/main.ts';

const root = new URL('../', import.meta.url).pathname;
const hasKubectl = (() => { try { execFileSync('kubectl', ['version', '--client'], { stdio: 'ignore' }); return true; } catch { return false; } })();

describe('deployment files', () => {
  it('k8s/base has one Deployment per registry target, running that TARGET from the one image', () => {
    for (const target of Object.keys(registry)) {
      const docs = parseAllDocuments(readFileSync(`${root}k8s/base/${target}.yaml`, 'utf8')).map((d) => d.toJSON());
      const dep = docs.find((d) => d.kind === 'Deployment');
      const c = dep.spec.template.spec.containers[0];
      expect(c.image).toBe('orderflow');
      expect(c.env.find((e: { name: string }) => e.name === 'TARGET').value).toBe(target);
      expect(c.readinessProbe.httpGet.path).toBe('/readyz');
      expect(docs.some((d) => d.kind === 'Service')).toBe(true);
    }
  });

  it.runIf(hasKubectl)('every overlay builds with kubectl kustomize', () => {
    for (const overlay of ['dev', 'prod']) {
      const out = execFileSync('kubectl', ['kustomize', `${root}k8s/overlays/${overlay}`], { encoding: 'utf8' });
      const kinds = parseAllDocuments(out).map((d) => d.toJSON().kind);
      expect(kinds.filter((k) => k === 'Deployment')).toHaveLength(Object.keys(registry).length);
    }
  });

  it('docker-compose.yml runs NATS with the repo config, Postgres, and orderflow', () => {
    const compose = parse(readFileSync(`${root}docker-compose.yml`, 'utf8'));
    // The default profile (services without `profiles`) is the cluster itself.
    const byDefault = Object.entries(compose.services).filter(([, s]: [string, any]) => !s.profiles).map(([n]) => n);
    expect(byDefault.sort()).toEqual(['nats', 'orderflow', 'postgres']);
    expect(compose.services.nats.volumes[0]).toContain('nats-server.conf');
    expect(compose.services.orderflow.environment.NATS_URL).toBe('nats://nats:4222');
    expect(readFileSync(`${root}nats-server.conf`, 'utf8')).toMatch(/jetstream\s*{/);
  });

  it('docker-compose.yml: an observability profile with Prometheus (ops/alerts), Grafana (ops/dashboards) and an OTLP trace backend', () => {
    const compose = parse(readFileSync(`${root}docker-compose.yml`, 'utf8'));
    const inProfile = Object.entries(compose.services).filter(([, s]: [string, any]) => s.profiles?.includes('observability')).map(([n]) => n);
    expect(inProfile.sort()).toEqual(['grafana', 'jaeger', 'prometheus']);
    const { prometheus, grafana, jaeger } = compose.services;
    expect(prometheus.volumes).toContain('./ops/alerts:/etc/prometheus/rules:ro');
    expect(prometheus.volumes).toContain('./ops/prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:ro');
    const promConfig = parse(readFileSync(`${root}ops/prometheus/prometheus.yml`, 'utf8'));
    expect(promConfig.rule_files).toEqual(['/etc/prometheus/rules/*.rules.yaml']);
    expect(promConfig.scrape_configs.flatMap((j: any) => j.static_configs.flatMap((c: any) => c.targets))).toContain('orderflow:8080');
    expect(grafana.volumes).toContain('./ops/dashboards:/var/lib/grafana/dashboards:ro');
    const datasources = parse(readFileSync(`${root}ops/grafana/provisioning/datasources/datasources.yaml`, 'utf8')).datasources;
    expect(datasources.find((d: any) => d.type === 'prometheus').uid).toBe('prometheus');
    expect(jaeger.environment.COLLECTOR_OTLP_ENABLED).toBe('true');
  });

  it('docker-compose.yml: every service has a health check, a restart policy and a pinned image; no host port clashes with a local NATS or Postgres', () => {
    const compose = parse(readFileSync(`${root}docker-compose.yml`, 'utf8'));
    const hostPorts: string[] = [];
    for (const [name, s] of Object.entries(compose.services) as [string, any][]) {
      expect(s.healthcheck?.test, name).toBeDefined();
      expect(s.restart, name).toBe('unless-stopped');
      if (s.image) expect(s.image, name).toMatch(/:v?\d[\w.-]*$/);
      hostPorts.push(...(s.ports ?? []).map((p: string) => p.split(':')[0]));
    }
    for (const taken of ['4222', '8222', '5432']) expect(hostPorts).not.toContain(taken);
    expect(new Set(hostPorts).size).toBe(hostPorts.length);
  });
});
