// Admin: the DLQ API. The DLQ mover itself runs in every process (see kit/runtime.ts).
import { createDlqAdmin } from '../kit/index.ts';
import type { Deps, Running } from '../kit/index.ts';
import { dlqRoutes } from './routes.ts';

export const entities = [];
export const migrations = [];

export async function start({ app, nats }: Deps): Promise<Running> {
  app.route('/api/admin/dlq', dlqRoutes({ dlq: createDlqAdmin(nats) }));
  return { async stop() {} };
}
