// Postgres through MikroORM 7: one pool per process, a schema per service, and
// migrations run at boot under an advisory lock so replicas starting together
// apply each migration once.
import { MikroORM, type EntityManager, type Options } from '@mikro-orm/postgresql';
import { Migration, Migrator } from '@mikro-orm/migrations';
import type { MigrationObject } from '@mikro-orm/core';
import pg from 'pg';
import type { Logger } from './log.ts';

export type { EntityManager, MikroORM };
export type MigrationDef = MigrationObject;

/** A migration from plain SQL statements; names sort in the order they must run. `sqlMigration('orders-0001-init', ['create table ...'])` */
export function sqlMigration(name: string, statements: string[]): MigrationDef {
  class SqlMigration extends Migration {
    override up() {
      for (const s of statements) this.addSql(s);
    }
  }
  return { name, class: SqlMigration };
}

/** Create the database named in `url` when it does not exist (CONTRACTS: "created if missing"). */
export async function ensureDatabase(url: string): Promise<void> {
  const target = new URL(url);
  const name = decodeURIComponent(target.pathname.slice(1));
  const admin = new URL(url);
  admin.pathname = '/postgres';
  const client = new pg.Client({ connectionString: admin.toString() });
  await client.connect();
  try {
    const { rowCount } = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [name]);
    if (!rowCount) {
      await client.query(`CREATE DATABASE "${name.replaceAll('"', '""')}"`).catch((err: { code?: string }) => {
        if (err.code !== '42P04') throw err; // created by a replica meanwhile
      });
    }
  } finally {
    await client.end();
  }
}

/** Open the ORM over every given entity. `const orm = await openOrm({ url, entities, migrations, poolMax: 20 })` */
export async function openOrm(opts: { url: string; entities: Options['entities']; migrations: MigrationDef[]; poolMax?: number; debug?: boolean }): Promise<MikroORM> {
  await ensureDatabase(opts.url);
  return await MikroORM.init({
    clientUrl: opts.url,
    entities: opts.entities,
    extensions: [Migrator],
    pool: { min: 2, max: opts.poolMax ?? 20 },
    // Without a connect timeout a request waits forever for a Postgres that is down; with
    // it the request fails fast and the client gets 503 UNAVAILABLE.
    driverOptions: { connectionTimeoutMillis: 3000 },
    migrations: { migrationsList: [...opts.migrations].sort((a, b) => a.name.localeCompare(b.name)), silent: true, snapshot: false, snapshotOnMigrate: false, tableName: 'kit.mikro_orm_migrations' },
    debug: opts.debug ?? false,
    allowGlobalContext: false,
    discovery: { warnWhenNoEntities: false },
  });
}

const MIGRATION_LOCK = 7_104_2024; // pg_advisory_lock key owned by the migrator

/** Apply pending migrations, one replica at a time. `await migrate(orm, log)` */
export async function migrate(orm: MikroORM, log: Logger): Promise<void> {
  const conn = orm.em.getConnection();
  await conn.execute('create schema if not exists kit');
  // A session-level lock needs one connection for lock, migrate, unlock: a transaction-level lock does it.
  await orm.em.fork().transactional(async (em) => {
    await em.execute('select pg_advisory_xact_lock(?)', [MIGRATION_LOCK]);
    const done = await orm.migrator.up({ transaction: em.getTransactionContext() });
    if (done.length) log.info({ migrations: done.map((m) => m.name) }, 'migrations applied');
  });
}
