// The entities are the one schema source: whatever the migrations build must be exactly what
// MikroORM's schema diff derives from the entities, for the whole cluster, for each target on
// its own, and for a database that the old hand-written DDL built.
import { describe, expect, it } from 'vitest';
import { registry } from '../main.ts';
import { entitySchemas, migrate, openOrm, PartialLegacySchemaError, schemaDrift, type MigrationDef, type MikroORM } from './db.ts';
import { legacyMigrations } from './legacy-migrations.ts';
import { createLogger } from './log.ts';
import { kitEntities, kitMigrations } from './migrations.ts';
import { createTestDatabase } from '../testing/index.ts';

const log = createLogger({ level: 'silent' });
const services = Object.entries(registry).filter(([, m]) => m.entities.length);
const allEntities = [...kitEntities, ...services.flatMap(([, m]) => m.entities)];
const allMigrations = [...kitMigrations, ...services.flatMap(([, m]) => m.migrations)];

async function withDatabase<T>(fn: (url: string) => Promise<T>): Promise<T> {
  const db = await createTestDatabase('orderflow_schema');
  try { return await fn(db.url); } finally { await db.drop(); }
}

async function withOrm<T>(url: string, entities: unknown[], migrations: MigrationDef[], fn: (orm: MikroORM) => Promise<T>): Promise<T> {
  const orm = await openOrm({ url, entities: entities as never, migrations, poolMax: 4 });
  try { return await fn(orm); } finally { await orm.close(); }
}

/** Every schema whose database differs from its entities, with the SQL that would fix it. */
async function drift(orm: MikroORM, entities: unknown[]): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const schema of entitySchemas(entities)) {
    const { up } = await schemaDrift(orm, schema);
    if (up.trim()) out[schema] = up.trim();
  }
  return out;
}

describe('schema from the entities', () => {
  it('a fresh database migrated as at start-up is exactly what the entities say, in every schema', async () => {
    await withDatabase(async (url) => withOrm(url, allEntities, allMigrations, async (orm) => {
      await migrate(orm, log);
      expect(entitySchemas(allEntities).sort()).toEqual(['admin', 'catalog', 'funding', 'identity', 'inventory', 'kit', 'lending', 'notifications', 'orders', 'payments', 'saga', 'shipping']);
      expect(await drift(orm, allEntities)).toEqual({});
    }));
  });

  it('each target\'s own migrations (with the kit\'s) build its schema alone', async () => {
    for (const [name, m] of services) {
      await withDatabase(async (url) => withOrm(url, [...kitEntities, ...m.entities], [...kitMigrations, ...m.migrations], async (orm) => {
        await migrate(orm, log);
        expect({ name, drift: await drift(orm, [...kitEntities, ...m.entities]) }).toEqual({ name, drift: {} });
      }));
    }
  });

  it('a database built by the old hand-written DDL upgrades to the baselines with its data and no difference', async () => {
    await withDatabase(async (url) => {
      await withOrm(url, [], legacyMigrations, async (orm) => {
        await migrate(orm, log);
        await orm.em.fork().execute(`insert into orders.orders (id, order_id, email, items, status, history, created_at, updated_at, saga_version)
          values ('00000000-0000-4000-8000-000000000001', 'legacy-1', 'a@b.c', '[]', 'PENDING', '[]', now(), now(), 3)`);
      });
      await withOrm(url, allEntities, allMigrations, async (orm) => {
        await migrate(orm, log);
        expect(await drift(orm, allEntities)).toEqual({});
        const logged = await orm.em.fork().execute<{ name: string }[]>('select name from kit.mikro_orm_migrations');
        expect(logged.map((r) => r.name)).toEqual(expect.arrayContaining(allMigrations.map((m) => m.name)));
        const [row] = await orm.em.fork().execute<{ saga_version: number }[]>(`select saga_version from orders.orders where order_id = 'legacy-1'`);
        expect(row?.saga_version).toBe(3);
      });
    });
  });

  it('refuses a database that ran only part of the old DDL a baseline replaces, rather than guess its shape', async () => {
    await withDatabase(async (url) => {
      await withOrm(url, [], legacyMigrations.filter((m) => m.name !== 'orders-0002-saga-status'), async (orm) => { await migrate(orm, log); });
      await withOrm(url, allEntities, allMigrations, async (orm) => {
        await expect(migrate(orm, log)).rejects.toBeInstanceOf(PartialLegacySchemaError);
      });
    });
  });

  it('two processes starting together on a fresh database apply each migration once', async () => {
    await withDatabase(async (url) => {
      const [a, b] = await Promise.all([1, 2].map(() => openOrm({ url, entities: allEntities as never, migrations: allMigrations, poolMax: 4 })));
      try {
        await Promise.all([migrate(a!, log), migrate(b!, log)]);
        const logged = await a!.em.fork().execute<{ name: string }[]>('select name from kit.mikro_orm_migrations');
        expect(logged.map((r) => r.name).sort()).toEqual(allMigrations.map((m) => m.name).sort());
        expect(await drift(a!, allEntities)).toEqual({});
      } finally {
        await Promise.all([a!.close(), b!.close()]);
      }
    });
  });
});
