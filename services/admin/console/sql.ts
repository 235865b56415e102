// Small pieces the console's reads share: keyset cursors, empty form fields, and the
// words for a table that is not there.
import { z, type ZodType } from 'zod';
import { HttpError } from '../../kit/index.ts';

/** A search form sends empty fields as ''; they mean "any". `optional(z.string().max(64))` */
export const optional = <T extends ZodType>(t: T) => z.preprocess((v) => (v === '' ? undefined : v), t.optional());

/** An opaque cursor for keyset paging on (time, id): the last row a page showed. */
export const encodeKeyset = (at: Date | string, id: string) => Buffer.from(`${new Date(at).toISOString()}|${id}`).toString('base64url');

export function decodeKeyset(cursor: string): { at: Date; id: string } {
  const m = /^(\d{4}-\d\d-\d\dT[\d:.]+Z)\|([\w.-]{1,64})$/.exec(Buffer.from(cursor, 'base64url').toString());
  const at = m ? new Date(m[1]!) : undefined;
  if (!m || !at || Number.isNaN(at.getTime())) throw new HttpError(400, 'VALIDATION_FAILED', 'invalid request: cursor', [{ field: 'cursor', message: 'not a cursor this page made' }]);
  return { at, id: m[2]! };
}

/** A failed read of another service's table, in words: a missing table means its service never ran against this database. */
export const isMissingTable = (err: unknown) => {
  const e = err as { code?: string; name?: string; message?: string } | undefined;
  return e?.code === '42P01' || e?.name === 'TableNotFoundException' || /relation .* does not exist/.test(String(e?.message));
};

export function schemaOf(err: unknown): string {
  if (isMissingTable(err)) return 'this database has no such table yet (its service has not run here)';
  if (err instanceof HttpError) return err.message;
  return 'the read failed; reload to try again';
}
