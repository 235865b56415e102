// Password hashing with Argon2id at OWASP's first recommended setting (19 MiB, 2 passes,
// 1 lane), stored as a PHC string so the parameters can be raised later and old hashes
// still verify. Node's async crypto.argon2 runs on the libuv thread pool, off the event loop.
import { argon2, randomBytes, timingSafeEqual } from 'node:crypto';
import { promisify } from 'node:util';

const argon2Async = promisify(argon2);

export type Argon2Params = { memory: number; passes: number; parallelism: number };
/** OWASP Password Storage Cheat Sheet: m=19456 KiB, t=2, p=1. */
export const OWASP_ARGON2ID: Argon2Params = { memory: 19_456, passes: 2, parallelism: 1 };
const TAG_BYTES = 32;

/** `await hashPassword('correct horse battery') // '$argon2id$v=19$m=19456,t=2,p=1$…$…'` */
export async function hashPassword(password: string, params: Argon2Params = OWASP_ARGON2ID): Promise<string> {
  const nonce = randomBytes(16);
  const tag = await argon2Async('argon2id', { message: password, nonce, tagLength: TAG_BYTES, ...params });
  return `$argon2id$v=19$m=${params.memory},t=${params.passes},p=${params.parallelism}$${nonce.toString('base64url')}$${tag.toString('base64url')}`;
}

const PHC = /^\$argon2id\$v=19\$m=(\d+),t=(\d+),p=(\d+)\$([\w-]+)\$([\w-]+)$/;

/** Whether `password` matches the PHC string; false (never a throw) for a malformed hash. */
export async function verifyPassword(password: string, phc: string): Promise<boolean> {
  const m = PHC.exec(phc);
  if (!m) return false;
  const expected = Buffer.from(m[5]!, 'base64url');
  const tag = await argon2Async('argon2id', {
    message: password, nonce: Buffer.from(m[4]!, 'base64url'), tagLength: expected.length,
    memory: Number(m[1]), passes: Number(m[2]), parallelism: Number(m[3]),
  });
  return timingSafeEqual(tag, expected);
}
