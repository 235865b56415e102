import { describe, expect, it } from 'vitest';
import { createDlqAdmin } from './dlq.ts';

describe('DLQ ids', () => {
  it('are digits only: 18.0, +18, 0x12 and 18e0 are not entry 18', async () => {
    // Ids are rejected before NATS is asked, so no connection is needed.
    const dlq = createDlqAdmin({ js: null as never, jsm: null as never });
    for (const id of ['18.0', '+18', '0x12', '18e0', ' 18', '018', '99999999999999999999']) {
      expect(await dlq.get(id)).toBeNull();
      expect(await dlq.remove(id)).toBe(false);
      expect(await dlq.redrive(id)).toBeNull();
    }
  });
});
