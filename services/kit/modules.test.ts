import { describe, expect, it } from 'vitest';
import { registry } from '../main.ts';
import { sqlMigration } from './db.ts';
import { defineModule, ModuleMapError, planModules, type ModuleNeeds, type ServiceModule } from './modules.ts';
import { resolveTargets } from './runtime.ts';

const none: ModuleNeeds = { schemas: [], outboxRelay: false, dlqMover: false, externals: [] };
const mod = (name: string, m: Partial<Omit<ServiceModule, 'needs'>> & { needs?: Partial<ModuleNeeds> } = {}): ServiceModule =>
  defineModule({ name, entities: [], migrations: [], start: async () => ({ stop: async () => {} }), ...m, needs: { ...none, ...m.needs } });

const plan = (target: string) => planModules(resolveTargets(target, registry), registry);
const names = (p: ReturnType<typeof plan>) => p.migrations.map((m) => m.name.split('-')[0]);

describe('module map: what a process boots for its targets', () => {
  it('funding-scoring migrates the funding schema it uses (the funding target owns it), runs a relay, starts no simulator and no DLQ mover', () => {
    const p = plan('funding-scoring');
    expect(p.schemas).toEqual(['funding']);
    expect(new Set(names(p))).toEqual(new Set(['funding']));
    expect(p.entities).toEqual(registry.funding!.entities);
    expect(p).toMatchObject({ outboxRelay: true, dlqMover: false, externals: [] });
  });

  it('notifications: its own schema, no relay (it writes no outbox rows), SMTP and SMS', () => {
    expect(plan('notifications')).toMatchObject({ schemas: ['notifications'], outboxRelay: false, dlqMover: false, externals: ['smtp', 'sms'] });
  });

  it('the DLQ mover runs with the admin target', () => {
    expect(plan('catalog,inventory').dlqMover).toBe(false);
    expect(plan('lending,admin')).toMatchObject({ schemas: ['admin', 'lending'], dlqMover: true, outboxRelay: true, externals: ['t24'] });
  });

  it('the union over several targets, each schema once', () => {
    const p = plan('funding,funding-scoring,payments');
    expect(p.schemas).toEqual(['funding', 'payments']);
    expect(p.migrations.map((m) => m.name)).toEqual([...registry.funding!.migrations, ...registry.payments!.migrations].map((m) => m.name));
    expect(p.externals).toEqual(['gateway']);
  });

  it('all (monolithic) boots everything, as before the map', () => {
    const p = plan('all');
    expect(p.schemas).toEqual(['admin', 'catalog', 'funding', 'identity', 'inventory', 'lending', 'notifications', 'orders', 'payments', 'saga', 'shipping']);
    expect(p.migrations.map((m) => m.name).sort()).toEqual(Object.values(registry).flatMap((m) => m.migrations).map((m) => m.name).sort());
    expect(p).toMatchObject({ outboxRelay: true, dlqMover: true, externals: ['smtp', 'sms', 't24', 'gateway'] });
  });

  it('a catalog-only process has no schema but its own and nothing to relay', () => {
    expect(plan('catalog')).toMatchObject({ schemas: ['catalog'], outboxRelay: false, dlqMover: false, externals: [] });
  });

  it('refuses a misdeclared map', () => {
    const owner = mod('a', { schema: 'a', migrations: [sqlMigration('a-0001', [])] });
    expect(() => planModules(['b'], { a: owner, b: mod('b', { needs: { schemas: ['zzz'] } }) })).toThrow(ModuleMapError);
    expect(() => planModules(['b'], { a: owner, b: mod('b', { schema: 'a' }) })).toThrow(/owned by both a and b/);
    expect(() => planModules(['b'], { b: mod('b', { schema: 'b', migrations: [sqlMigration('a-0002', [])] }) })).toThrow(/do not start with b-/);
    expect(() => planModules(['b'], { b: mod('b', { migrations: [sqlMigration('b-0001', [])] }) })).toThrow(/owns no schema/);
    expect(() => planModules(['x'], { b: mod('x') })).toThrow(/registered as b/);
    // A schema nobody owns fails whichever target boots, not only the one that needs it.
    expect(() => planModules(['a'], { a: owner, b: mod('b', { needs: { schemas: ['zzz'] } }) })).toThrow(/needs schema zzz/);
    // Relays elsewhere leave a hooked subject's rows: its module must relay them itself.
    expect(() => planModules(['a'], { a: owner, b: mod('b', { needs: { relayHooks: ['b.x'] } }) })).toThrow(/hooks relayed subjects but runs no outbox relay/);
  });

  it("a subject some module hooks as it is relayed is relayed only in that module's processes", () => {
    // funding's status events write the status cache from the relay (funding and funding-scoring both can).
    expect(plan('funding')).toMatchObject({ relayHooks: ['funding.status.updated'], relayElsewhere: [] });
    expect(plan('funding-scoring')).toMatchObject({ relayHooks: ['funding.status.updated'], relayElsewhere: [] });
    expect(plan('orders')).toMatchObject({ relayHooks: [], relayElsewhere: ['funding.status.updated'] });
  });
});
