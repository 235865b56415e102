// The module map. Each target declares what its process must boot for it: the Postgres
// schemas it uses, whether it wants the outbox relay and the DLQ mover, and which
// external systems it calls. The runtime boots the union of what the chosen targets
// declare (planModules), so a target never depends on another target's process having
// migrated its tables or relayed its events.
import type { MigrationDef } from './db.ts';
import type { FlagSeed } from './flags.ts';
import type { Deps, Running } from './service.ts';

/** External systems main.ts can stand in for with an in-repo simulator while their URL is unset. */
export const EXTERNAL_SYSTEMS = ['smtp', 'sms', 't24', 'gateway'] as const;
export type ExternalSystem = (typeof EXTERNAL_SYSTEMS)[number];

/** The variable naming each external system's URL (CONTRACTS.md, "Running the cluster"). */
export const EXTERNAL_URL_VARS: Record<ExternalSystem, string> = { smtp: 'SMTP_URL', sms: 'SMS_URL', t24: 'T24_URL', gateway: 'PAYMENT_GATEWAY_URL' };

export type ModuleNeeds = {
  /** Schemas of other modules it reads or writes; their owners' migrations run in its process too. Its own schema is implied. */
  schemas: string[];
  /** Run an outbox relay in its process: it writes kit.outbox rows, and only a relay in the writing process is woken by the commit (others find the rows at their next poll). */
  outboxRelay: boolean;
  /** Run the DLQ mover (ADVISORIES -> DLQ) in its process. */
  dlqMover: boolean;
  /** External systems it calls; main.ts starts a simulator for each whose URL is unset. */
  externals: ExternalSystem[];
  /** Secrets it reads from the environment; production refuses to start without each (development has stand-ins). */
  secrets?: string[];
  /**
   * Outbox subjects whose rows need this module's code as they are relayed: its start()
   * registers a hook for each (deps.onRelay), run with the drain's rows of that subject
   * while they are published and before the drain commits. Relays of processes without
   * such a module leave those rows to one that has it.
   */
  relayHooks?: string[];
};

export type ServiceModule = {
  /** The TARGET name. */
  name: string;
  /** The Postgres schema it owns: `migrations` create it (each named `<schema>-…`), `entities` map it. */
  schema?: string;
  entities: unknown[];
  migrations: MigrationDef[];
  needs: ModuleNeeds;
  /** Feature flags it owns (one owner per flag, whichever of its targets evaluates them), with their defaults; every process creates those the bucket lacks, whatever its TARGET. */
  flags?: FlagSeed[];
  /** Left out of TARGET=all: a target that only makes sense in a process of its own (the gateway, in front of the others). */
  standalone?: boolean;
  start(deps: Deps): Promise<Running>;
};

/** A misdeclared module map (a schema nobody owns, a migration outside its owner's prefix). */
export class ModuleMapError extends Error {
  override name = 'ModuleMapError';
}

/**
 * Declare a target. `export const module = defineModule({ name: 'orders', schema: 'orders', entities, migrations,
 * needs: { schemas: [], outboxRelay: true, dlqMover: false, externals: [] }, start })`
 */
export function defineModule(m: ServiceModule): ServiceModule {
  return m;
}

/** What a process boots for its targets. */
export type ModulePlan = {
  targets: string[];
  /** Schemas migrated and mapped, sorted; kit's own tables come with every process. */
  schemas: string[];
  migrations: MigrationDef[];
  entities: unknown[];
  outboxRelay: boolean;
  dlqMover: boolean;
  externals: ExternalSystem[];
  /** Secrets the targets read, sorted (production requires each). */
  secrets: string[];
  /** Subjects the targets hook as they are relayed (ModuleNeeds.relayHooks): each must get its hook. */
  relayHooks: string[];
  /** Subjects other modules hook: this process's relay leaves their rows to those modules' processes. */
  relayElsewhere: string[];
};

/**
 * The union of what the targets need, checked against the whole map (every module, so a
 * schema without an owner fails in any TARGET, not only in the one that boots it).
 * `planModules(['funding-scoring'], modules) // { schemas: ['funding'], outboxRelay: true, … }`
 */
export function planModules(targets: string[], modules: Record<string, ServiceModule>): ModulePlan {
  const owners = new Map<string, ServiceModule>();
  for (const [key, m] of Object.entries(modules)) {
    if (m.name !== key) throw new ModuleMapError(`module ${m.name} is registered as ${key}`);
    if (!m.schema) {
      if (m.migrations.length || m.entities.length) throw new ModuleMapError(`module ${m.name} has migrations or entities but owns no schema`);
      continue;
    }
    const other = owners.get(m.schema);
    if (other) throw new ModuleMapError(`schema ${m.schema} is owned by both ${other.name} and ${m.name}`);
    owners.set(m.schema, m);
    const stray = m.migrations.filter((x) => !x.name.startsWith(`${m.schema}-`));
    if (stray.length) throw new ModuleMapError(`module ${m.name}: migrations ${stray.map((x) => x.name).join(', ')} do not start with ${m.schema}-`);
  }
  for (const m of Object.values(modules)) {
    for (const s of m.needs.schemas) if (!owners.has(s)) throw new ModuleMapError(`module ${m.name} needs schema ${s}, which no module owns`);
    for (const e of m.needs.externals) if (!EXTERNAL_SYSTEMS.includes(e)) throw new ModuleMapError(`module ${m.name} needs unknown external ${e}`);
    // Every other relay leaves those rows: without a relay of its own nobody would publish them.
    if (m.needs.relayHooks?.length && !m.needs.outboxRelay) throw new ModuleMapError(`module ${m.name} hooks relayed subjects but runs no outbox relay`);
  }

  const chosen = targets.map((t) => {
    const m = modules[t];
    if (!m) throw new ModuleMapError(`no module ${t}`);
    return m;
  });
  const schemas = [...new Set(chosen.flatMap((m) => [...(m.schema ? [m.schema] : []), ...m.needs.schemas]))].sort();
  const owning = schemas.map((s) => owners.get(s)!);
  const relayHooks = [...new Set(chosen.flatMap((m) => m.needs.relayHooks ?? []))].sort();
  return {
    targets,
    schemas,
    migrations: owning.flatMap((m) => m.migrations),
    entities: owning.flatMap((m) => m.entities),
    outboxRelay: chosen.some((m) => m.needs.outboxRelay),
    dlqMover: chosen.some((m) => m.needs.dlqMover),
    externals: EXTERNAL_SYSTEMS.filter((e) => chosen.some((m) => m.needs.externals.includes(e))),
    secrets: [...new Set(chosen.flatMap((m) => m.needs.secrets ?? []))].sort(),
    relayHooks,
    relayElsewhere: [...new Set(Object.values(modules).flatMap((m) => m.needs.relayHooks ?? []))].filter((s) => !relayHooks.includes(s)).sort(),
  };
}
