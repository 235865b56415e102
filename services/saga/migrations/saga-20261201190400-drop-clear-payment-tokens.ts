// Data only, written by hand (no schema change, so nothing for the generator to find):
// sagas from before payment tokens were sealed hold the token in clear; past the charge
// it is never needed again (saga.ts drops it as a saga moves on, this drops the rest).
import { sqlMigration } from '../../kit/index.ts';

export default sqlMigration('saga-20261201190400-drop-clear-payment-tokens', [
  `update saga.sagas set doc = doc - 'paymentToken' where step not in ('RESERVING', 'CHARGING') and doc->>'paymentToken' is not null`,
]);
