// The production policy for workloads and the database's backups, as functions the tests run over rendered manifests.
export type K8sObject = { apiVersion: string; kind: string; metadata: { name: string; namespace?: string; labels?: Record<string, string> }; spec?: any; data?: Record<string, string> };

const matches = (selector: Record<string, string> | undefined, labels: Record<string, string> | undefined) =>
  !!selector && Object.keys(selector).length > 0 && Object.entries(selector).every(([k, v]) => labels?.[k] === v);

/**
 * What keeps each workload from production: probes, requests and limits, a non-root read-only
 * hardened securityContext, a pinned image, and (Deployments) a PodDisruptionBudget; and every
 * CloudNativePG Cluster backed up (backupViolations).
 * `policyViolations(objects) // ['Deployment/orderflow-orders: container orderflow has no livenessProbe']`
 */
export function policyViolations(objects: K8sObject[]): string[] {
  const out: string[] = [];
  const pdbs = objects.filter((o) => o.kind === 'PodDisruptionBudget');
  for (const o of objects.filter((x) => ['Deployment', 'DaemonSet', 'StatefulSet'].includes(x.kind))) {
    const id = `${o.kind}/${o.metadata.name}`;
    const pod = o.spec?.template?.spec ?? {};
    const podLabels = o.spec?.template?.metadata?.labels;
    const psc = pod.securityContext ?? {};
    if (psc.runAsNonRoot !== true) out.push(`${id}: pod securityContext lacks runAsNonRoot: true`);
    if (psc.seccompProfile?.type !== 'RuntimeDefault') out.push(`${id}: pod securityContext lacks seccompProfile RuntimeDefault`);
    for (const c of [...(pod.initContainers ?? []), ...(pod.containers ?? [])]) {
      const cid = `${id}: container ${c.name}`;
      for (const probe of ['startupProbe', 'readinessProbe', 'livenessProbe']) if (!c[probe]) out.push(`${cid} has no ${probe}`);
      for (const r of ['cpu', 'memory']) if (!c.resources?.requests?.[r]) out.push(`${cid} has no ${r} request`);
      if (!c.resources?.limits?.memory) out.push(`${cid} has no memory limit`);
      const sc = c.securityContext ?? {};
      if (sc.allowPrivilegeEscalation !== false) out.push(`${cid}: securityContext lacks allowPrivilegeEscalation: false`);
      if (sc.readOnlyRootFilesystem !== true) out.push(`${cid}: securityContext lacks readOnlyRootFilesystem: true`);
      if (!(sc.capabilities?.drop ?? []).includes('ALL')) out.push(`${cid}: securityContext does not drop ALL capabilities`);
      if (sc.privileged === true || sc.runAsUser === 0) out.push(`${cid} runs privileged or as root`);
      const image = String(c.image ?? '');
      const tag = image.includes('@sha256:') ? 'digest' : image.slice(image.lastIndexOf('/') + 1).split(':')[1];
      if (!tag || tag === 'latest') out.push(`${cid}: image ${image} is not pinned`);
    }
    if (o.kind === 'Deployment' && !pdbs.some((p) => (p.metadata.namespace ?? '') === (o.metadata.namespace ?? '') && matches(p.spec?.selector?.matchLabels, podLabels))) {
      out.push(`${id} has no PodDisruptionBudget`);
    }
  }
  // Data is part of production too: a database without backups is one volume loss from gone.
  out.push(...backupViolations(objects));
  return out;
}

/**
 * What keeps a CloudNativePG Cluster's data from surviving the loss of its volumes: continuous
 * WAL archiving to an object store (spec.backup.barmanObjectStore with a destination and
 * credentials from a Secret), a retention policy (else the bucket grows for ever), and a
 * ScheduledBackup taking base backups of it (WAL alone cannot be restored without a base).
 * `backupViolations(objects) // ['Cluster/orderflow-db: no ScheduledBackup']`
 */
export function backupViolations(objects: K8sObject[]): string[] {
  const out: string[] = [];
  const scheduled = objects.filter((o) => o.kind === 'ScheduledBackup' && o.apiVersion.startsWith('postgresql.cnpg.io/'));
  for (const c of objects.filter((o) => o.kind === 'Cluster' && o.apiVersion.startsWith('postgresql.cnpg.io/'))) {
    const id = `Cluster/${c.metadata.name}`;
    const backup = c.spec?.backup;
    const store = backup?.barmanObjectStore;
    if (!store) { out.push(`${id} has no spec.backup.barmanObjectStore (no WAL archiving)`); } else {
      if (!store.destinationPath) out.push(`${id}: barmanObjectStore has no destinationPath`);
      const creds = [store.s3Credentials?.accessKeyId, store.s3Credentials?.secretAccessKey, store.azureCredentials?.connectionString, store.googleCredentials?.applicationCredentials];
      const inherit = store.s3Credentials?.inheritFromIAMRole === true || store.azureCredentials?.inheritFromAzureAD === true || store.googleCredentials?.gkeEnvironment === true;
      if (!inherit && !creds.some((r) => r?.name && r?.key)) out.push(`${id}: barmanObjectStore has no credentials from a Secret`);
      if (!backup.retentionPolicy) out.push(`${id}: spec.backup has no retentionPolicy`);
    }
    const mine = scheduled.filter((s) => s.spec?.cluster?.name === c.metadata.name && (s.metadata.namespace ?? '') === (c.metadata.namespace ?? ''));
    if (!mine.length) out.push(`${id} has no ScheduledBackup`);
    for (const s of mine) if (s.spec?.suspend === true) out.push(`ScheduledBackup/${s.metadata.name} is suspended`);
  }
  return out;
}
