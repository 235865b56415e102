// Admin: the operator console (/admin) and the DLQ API, and the process that runs the
// cluster's housekeeping: the DLQ mover, and an outbox relay that publishes rows whose
// writers are all gone (a target scaled to zero). In monolithic mode it is one of the
// targets. It also serves the feature flag API and keeps the audit of flag changes (schema admin).
import { businessKeys, contractFor } from '../../contracts/messages.ts';
import { createDlqAdmin, defineModule, type Deps, type DlqContracts, type Running } from '../kit/index.ts';
import { loadAdminConfig } from './config.ts';
import { createConsole } from './console/routes.ts';
import { entities, migrations } from './entities.ts';
import { flagRoutes } from './flag-routes.ts';
import { dlqRoutes } from './routes.ts';

export { entities, migrations };

/** The message table of contracts/messages.ts, as the DLQ reads it. */
export const dlqContracts: DlqContracts = {
  schemaFor: (subject) => contractFor(subject)?.schema,
  keysOf: businessKeys,
};

export async function start({ app, routes, nats, flags, orm, env, log, metrics }: Deps): Promise<Running> {
  const config = loadAdminConfig(env);
  const dlq = createDlqAdmin({ ...nats, contracts: dlqContracts });
  dlqRoutes(routes, { dlq });
  flagRoutes(routes, { store: flags.store, orm });
  const console = createConsole({ app, table: routes.table, orm, dlq, metrics, log, config });
  // The console's forms post form-encoded bodies, as HTML forms do.
  app.formBodies.add('/admin/*');
  // Its pages go in the route table (405 and Allow, their access); its cookie session, guards and error pages stay its own.
  routes.mount({
    prefix: '/admin', app: console.routes, tags: ['console'], access: console.access,
    documented: {
      'GET /admin': { summary: 'The operator console: its sign-in page, or the signed-in user\'s first section', responses: { 303: { description: 'to /admin/login, /admin/orders or /admin/funding', type: 'empty' } } },
      'GET /admin/login': { summary: 'The operator console\'s sign-in page', responses: { 200: { description: 'the page', type: 'html' } } },
    },
  });
  return { async stop() { console.stop(); } };
}

/** The `admin` target. Advisories wait in the ADVISORIES stream (7 days) while no admin process runs. */
export const module = defineModule({
  name: 'admin', schema: 'admin', entities, migrations, start,
  needs: { schemas: [], outboxRelay: true, dlqMover: true, externals: [] },
});
