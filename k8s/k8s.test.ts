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
    expect(Object.keys(compose.services).sort()).toEqual(['nats', 'orderflow', 'postgres']);
    expect(compose.services.nats.volumes[0]).toContain('nats-server.conf');
    expect(compose.services.orderflow.environment.NATS_URL).toBe('nats://nats:4222');
    expect(readFileSync(`${root}nats-server.conf`, 'utf8')).toMatch(/jetstream\s*{/);
  });
});
