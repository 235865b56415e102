// Payments: charges and refunds through the payment gateway (payments.cmd.*, consumers.ts),
// behind the kit's breaker-guarded client.
import { createGatewayClient } from '../kit/index.ts';
import { paymentTokenSealer } from '../kit/index.ts';
import { defineModule } from '../kit/index.ts';
import type { Deps, Running } from '../kit/index.ts';
import { loadPaymentsConfig } from './config.ts';
import { startPaymentsConsumer } from './consumers.ts';
import { entities, migrations } from './entities.ts';

export { entities, migrations };

export async function start(deps: Deps): Promise<Running> {
  const config = loadPaymentsConfig(deps.env, deps.endpoints.gateway);
  // Opens the tokens orders sealed (kit/seal.ts); the same PAYMENT_TOKEN_KEY list as orders.
  const sealer = paymentTokenSealer(deps.env, deps.log);
  const client = createGatewayClient({
    metrics: { metrics: deps.metrics, client: 'payments' },
    baseUrl: config.PAYMENT_GATEWAY_URL, log: deps.log, timeoutMs: config.PAYMENTS_TIMEOUT_MS,
    breaker: { errorThresholdPercentage: config.PAYMENTS_BREAKER_ERROR_PCT, volumeThreshold: config.PAYMENTS_BREAKER_VOLUME, resetTimeoutMs: config.PAYMENTS_BREAKER_RESET_MS },
  });
  const worker = await startPaymentsConsumer(deps, { client, sealer, config });
  return {
    async stop() {
      await worker.stop();
      client.close();
    },
  };
}

/** The `payments` target. Charge and refund outcomes leave through the outbox. */
export const module = defineModule({
  name: 'payments', schema: 'payments', entities, migrations, start,
  needs: { schemas: [], outboxRelay: true, dlqMover: false, externals: ['gateway'], secrets: ['PAYMENT_TOKEN_KEY'] },
});
