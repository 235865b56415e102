// Postgres through MikroORM 7: one pool per process, a schema per service, and
// migrations run at boot under an advisory lock so replicas starting together
// apply each migration once.
import { MikroORM, type EntityManager, type Options } from '@mikro-orm/postgresql';
import { Migration, Migrator } from '@mikro-orm/migrations';
import type { MigrationObject } from '@mikro-orm/core';
import pg from 'pg';
import type { Logger } from './log.ts';
import { tracePgPool, type Tracing } from './tracing.ts';

export type { EntityManager, MikroORM };
export type MigrationDef = MigrationObject;

/**
 * A migration from plain SQL statements; names sort in the order they must run. Files under
 * each service's migrations/ are generated from the entities (migrations-cli.ts) in this form.
 * `replaces` makes a baseline out of it: a database that already ran every one of those older
 * migrations has this schema already, so the statements are skipped and only the name is logged.
 * `sqlMigration('orders-0001-baseline', ['create table ...'], { replaces: ['orders-0001-init'] })`
 */
export function sqlMigration(name: string, statements: string[], opts: { down?: string[]; replaces?: string[] } = {}): MigrationDef {
  const replaces = opts.replaces ?? [];
  class SqlMigration extends Migration {
    override async up() {
      if (replaces.length) {
        const ran = await this.execute(`select name from ${MIGRATIONS_TABLE} where name in (${replaces.map(() => '?').join(', ')})`, replaces);
        if (ran.length === replaces.length) return;
        if (ran.length) throw new PartialLegacySchemaError(name, replaces, ran.map((r) => String(r.name)));
      }
      for (const s of statements) this.addSql(s);
    }

    override down() {
      for (const s of opts.down ?? []) this.addSql(s);
    }
  }
  return { name, class: SqlMigration };
}

/** A database that ran only some of the migrations a baseline replaces: its schema is neither old nor new. */
export class PartialLegacySchemaError extends Error {
  constructor(baseline: string, replaces: string[], ran: string[]) {
    super(`migration ${baseline} replaces ${replaces.join(', ')}, but this database ran only ${ran.join(', ')}: start the release before it once to finish those, then this one`);
    this.name = 'PartialLegacySchemaError';
  }
}

const MIGRATIONS_TABLE = 'kit.mikro_orm_migrations';

/** The schemas (Postgres namespaces) the given entities live in. `entitySchemas(entities) // ['orders']` */
export function entitySchemas(entities: readonly unknown[]): string[] {
  return [...new Set(entities.map((e) => (e as { meta: { schema?: string } }).meta.schema ?? 'public'))];
}

/**
 * The SQL that would make `schema` in the database what the entities say ('' when they agree), from
 * MikroORM's schema diff, the same one the migrator generates migrations from. `await schemaDrift(orm, 'orders')`
 */
export async function schemaDrift(orm: MikroORM, schema: string): Promise<{ up: string; down: string }> {
  return await orm.schema.getUpdateSchemaMigrationSQL({ wrap: false, schema });
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
      await client.query(`CREATE DATABASE "${name.replaceAll('"', '""')}"`).catch(async (err: { code?: string }) => {
        // Created by a replica meanwhile: 42P04 when it committed before our check, 23505 on
        // pg_database's unique index when both got past it (the unique check waits for the
        // winner's commit, so the database is there to see now).
        if (err.code === '42P04') return;
        const { rowCount: now } = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [name]);
        if (!now) throw err;
      });
    }
  } finally {
    await client.end();
  }
}

/**
 * Open the ORM over every given entity. `const orm = await openOrm({ url, entities, migrations, poolMax: 20 })`
 * A read replica: `openOrm({ url: readUrl, entities, migrations: [], replica: true })`: no database is
 * created there (a standby is read-only; the primary's database arrives by replication).
 */
export async function openOrm(opts: { url: string; entities: Options['entities']; migrations: MigrationDef[]; poolMax?: number; debug?: boolean; replica?: boolean; tracing?: Tracing }): Promise<MikroORM> {
  if (!opts.replica) await ensureDatabase(opts.url);
  return await MikroORM.init({
    clientUrl: opts.url,
    entities: opts.entities,
    extensions: [Migrator],
    pool: { min: 2, max: opts.poolMax ?? 20 },
    // Without a connect timeout a request waits forever for a Postgres that is down; with
    // it the request fails fast and the client gets 503 UNAVAILABLE.
    driverOptions: {
      connectionTimeoutMillis: 3000,
      onPoolCreated: (pool: pg.Pool) => {
        releaseDeadClients(pool);
        // A span per statement inside a trace (tracing.ts); nothing while tracing is off.
        if (opts.tracing?.on) tracePgPool(opts.tracing, pool as never, decodeURIComponent(new URL(opts.url).pathname.slice(1)));
      },
    },
    migrations: { migrationsList: [...opts.migrations].sort((a, b) => a.name.localeCompare(b.name)), silent: true, snapshot: false, snapshotOnMigrate: false, tableName: MIGRATIONS_TABLE },
    debug: opts.debug ?? false,
    allowGlobalContext: false,
    discovery: { warnWhenNoEntities: false },
  });
}

/**
 * Give back the pool slot of a connection that died while checked out. kysely's ControlledTransaction
 * (what MikroORM's transactional() runs on) releases its connection only after a COMMIT or ROLLBACK
 * that succeeded; when Postgres goes away mid-transaction (a crash, a reset, a partition), the
 * ROLLBACK fails on the dead connection and the slot stayed taken for the life of the process:
 * the chaos suite saw one 6 s Postgres partition leave all 20 taken and the process wedged.
 * pg-pool assigns `client.release` at every checkout; we keep it and hand out a once-only wrapper,
 * call it ourselves (with the error, so the pool discards the client) when the connection ends,
 * and the holder's own later release is then a no-op.
 */
function releaseDeadClients(pool: pg.Pool): void {
  pool.on('connect', (client) => {
    let release: ((err?: Error | boolean) => void) | undefined;
    let released = true;
    Object.defineProperty(client, 'release', {
      configurable: true,
      get: () => (err?: Error | boolean) => { if (released) return; released = true; release?.(err); },
      set: (fn: (err?: Error | boolean) => void) => { release = fn; released = false; },
    });
    client.once('end', () => {
      if (released) return;
      released = true;
      release?.(new Error('connection ended while checked out'));
    });
  });
}

const MIGRATION_LOCK = 7_104_2024; // pg_advisory_lock key owned by the migrator

/** Apply pending migrations, one replica at a time. `await migrate(orm, log)` */
export async function migrate(orm: MikroORM, log: Logger): Promise<void> {
  const conn = orm.em.getConnection();
  // Two processes creating it at once can collide in pg_namespace despite `if not
  // exists` (a unique violation); the loser finds it there. It cannot move under the
  // migration lock below: the migrator creates its table on a connection of its own.
  await conn.execute('create schema if not exists kit').catch(async (err) => {
    const found = await conn.execute(`select 1 from pg_namespace where nspname = 'kit'`);
    if (!found.length) throw err;
  });
  // A session-level lock needs one connection for lock, migrate, unlock: a transaction-level lock does it.
  await orm.em.fork().transactional(async (em) => {
    await em.execute('select pg_advisory_xact_lock(?)', [MIGRATION_LOCK]);
    const done = await orm.migrator.up({ transaction: em.getTransactionContext() });
    if (done.length) log.info({ migrations: done.map((m) => m.name) }, 'migrations applied');
  });
}

const nativePool = async (orm: MikroORM) => await (orm.em.getConnection() as unknown as { getNativeClient(): Promise<pg.Pool> }).getNativeClient();

/** Connections of the process's pool: in use, idle, callers waiting for one, and the cap. `const u = await poolUsage(orm)` */
export async function poolUsage(orm: MikroORM): Promise<{ active: number; idle: number; waiting: number; max: number }> {
  const pool = await nativePool(orm);
  return { active: pool.totalCount - pool.idleCount, idle: pool.idleCount, waiting: pool.waitingCount, max: pool.options.max ?? 10 };
}

/**
 * One statement with bind parameters ($1, $2, ...) on the ORM's pool, for hot paths with large
 * parameters. MikroORM's `execute` inlines every parameter into the SQL text as an escaped
 * literal built one character at a time; for intake's batch, its orders as one JSON parameter, that was half of the statement's
 * node CPU (~110 -> ~55 µs per order, 16 a batch). Unnamed statements only: PgBouncer in
 * transaction mode (k8s prod) cannot keep named ones. Errors are pg's own (code, constraint).
 * `const rows = await rawQuery<{ id: string }>(orm, 'select $1::uuid as id', [id])`
 */
export async function rawQuery<R>(orm: MikroORM, text: string, values: unknown[]): Promise<R[]> {
  // Checked out and released by hand rather than pool.query: that passes the client a callback,
  // and the tracing wrapper (tracePgPool) only sees promise-style calls.
  const client = await (await nativePool(orm)).connect();
  try {
    return (await client.query(text, values)).rows as R[];
  } finally {
    client.release();
  }
}
