// Admin: the DLQ API. The DLQ mover itself runs in every process (see kit/runtime.ts).
import { businessKeys, contractFor } from '../../contracts/messages.ts';
import { createDlqAdmin, type DlqContracts } from '../kit/dlq.ts';
import type { Deps, Running } from '../kit/service.ts';
import { dlqRoutes } from './routes.ts';

export const entities = [];
export const migrations = [];

/** The message table of contracts/messages.ts, as the DLQ reads it. */
export const dlqContracts: DlqContracts = {
  schemaFor: (subject) => contractFor(subject)?.schema,
  keysOf: businessKeys,
};

export async function start({ app, nats }: Deps): Promise<Running> {
  app.route('/api/admin/dlq', dlqRoutes({ dlq: createDlqAdmin({ ...nats, contracts: dlqContracts }) }));
  return { async stop() {} };
}
