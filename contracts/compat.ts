// Contract tests between services, over the schemas of messages.ts (seed 003 names Pact;
// our producers and consumers share one zod schema per subject, so what can drift is the
// schema across versions, not two copies of it).
//
// contracts/schemas.lock.json records each subject's payload schema (JSON Schema from
// zod) as last released. During a rolling deploy old and new code run side by side, and
// messages written by the old code wait in streams and the DLQ for days: so a change must
// let OLD consumers read NEW messages and NEW consumers read OLD ones. In practice that
// allows adding an optional field, and nothing else; anything more is a new subject.
import { z } from 'zod';
import { MessageContracts } from './messages.ts';

type Schema = Record<string, unknown>;
export type SchemaLock = Record<string, Schema>;

/** Each contract's payload schema as JSON Schema, by subject (pattern). */
export function currentSchemas(): SchemaLock {
  const out: SchemaLock = {};
  for (const c of MessageContracts) out[c.subject] = z.toJSONSchema(c.schema, { unrepresentable: 'any', io: 'input' }) as Schema;
  return out;
}

const stable = (v: unknown): string => JSON.stringify(v, (_k, x) => (x && typeof x === 'object' && !Array.isArray(x) ? Object.fromEntries(Object.entries(x).sort(([a], [b]) => a.localeCompare(b))) : x));

/**
 * Why `next` cannot replace `prev` in both directions; [] when it can. Paths name where.
 * `breakingChanges(lock['orders.created'], current['orders.created'])`
 */
export function breakingChanges(prev: Schema, next: Schema, path = '$'): string[] {
  if (stable(prev) === stable(next)) return [];
  const isObject = (s: Schema) => s.type === 'object' && typeof s.properties === 'object';
  if (isObject(prev) && isObject(next)) {
    const out: string[] = [];
    const pp = prev.properties as Record<string, Schema>;
    const np = next.properties as Record<string, Schema>;
    const pr = new Set((prev.required as string[] | undefined) ?? []);
    const nr = new Set((next.required as string[] | undefined) ?? []);
    for (const k of Object.keys(pp)) {
      if (!(k in np)) out.push(`${path}.${k}: removed (new messages lack what old consumers may read, or old ones carry what the new schema refuses)`);
      else out.push(...breakingChanges(pp[k]!, np[k]!, `${path}.${k}`));
    }
    for (const k of Object.keys(np)) {
      if (!(k in pp) && nr.has(k)) out.push(`${path}.${k}: added as required (messages already written lack it)`);
    }
    for (const k of pr) if (k in np && !nr.has(k)) out.push(`${path}.${k}: no longer required (old consumers expect it)`);
    for (const k of nr) if (k in pp && !pr.has(k)) out.push(`${path}.${k}: newly required (messages already written may lack it)`);
    // The object-level keywords other than properties/required must not change either.
    const rest = (s: Schema) => stable(Object.fromEntries(Object.entries(s).filter(([k]) => k !== 'properties' && k !== 'required')));
    if (rest(prev) !== rest(next)) {
      // An added optional field is invisible to an old consumer only if it ignores unknown fields.
      if (next.additionalProperties === false || prev.additionalProperties === false) out.push(`${path}: additionalProperties false (an added field breaks one side)`);
      else out.push(`${path}: object keywords changed`);
    } else if (Object.keys(np).some((k) => !(k in pp)) && prev.additionalProperties === false) {
      out.push(`${path}: a field was added to an object that refuses unknown fields`);
    }
    return out;
  }
  if (prev.type === 'array' && next.type === 'array' && prev.items && next.items) {
    const rest = (s: Schema) => stable({ ...s, items: undefined });
    return [...(rest(prev) !== rest(next) ? [`${path}: array constraints changed`] : []), ...breakingChanges(prev.items as Schema, next.items as Schema, `${path}[]`)];
  }
  return [`${path}: changed from ${stable(prev)} to ${stable(next)}`];
}

/** Compare every subject of `lock` with the code's schemas. */
export function compareWithLock(lock: SchemaLock, current: SchemaLock = currentSchemas()): { breaking: string[]; changed: string[]; added: string[] } {
  const breaking: string[] = [];
  const changed: string[] = [];
  for (const [subject, prev] of Object.entries(lock)) {
    const next = current[subject];
    if (!next) { breaking.push(`${subject}: no longer has a contract (consumers of messages already written cannot read them)`); continue; }
    const b = breakingChanges(prev, next);
    breaking.push(...b.map((x) => `${subject} ${x}`));
    if (!b.length && stable(prev) !== stable(next)) changed.push(subject);
  }
  return { breaking, changed, added: Object.keys(current).filter((s) => !(s in lock)) };
}
