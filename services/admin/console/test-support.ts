// Test support for the console's tests: accounts with console roles, and a cookie-keeping
// client that signs in through the login form as a browser does.
import type { TestCluster } from '../../testing/index.ts';

export const ADMIN = { email: 'console-admin@example.com', password: 'console-admin-pw-1' };
export const PASSWORD = 'correct-horse-battery';

/** Env for a test cluster whose first admin is ADMIN, with fast live views. */
export const CONSOLE_ENV = { ADMIN_EMAIL: ADMIN.email, ADMIN_PASSWORD: ADMIN.password, ADMIN_CONSOLE_LIVE_MS: '200' };

async function json(c: TestCluster, method: string, path: string, body?: unknown, token?: string) {
  const res = await fetch(c.url + path, {
    method, headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

/** A user with these roles (registered, then given the roles by the first admin). */
export async function account(c: TestCluster, email: string, roles: string[]): Promise<{ email: string; password: string }> {
  const reg = await json(c, 'POST', '/api/auth/register', { email, password: PASSWORD, name: email.split('@')[0] });
  if (reg.status !== 201) throw new Error(`register ${email}: ${reg.status} ${JSON.stringify(reg.body)}`);
  const admin = await json(c, 'POST', '/api/auth/login', ADMIN);
  const put = await json(c, 'PUT', `/api/admin/users/${reg.body.id}/roles`, { roles }, admin.body.accessToken);
  if (put.status !== 200) throw new Error(`roles ${email}: ${put.status} ${JSON.stringify(put.body)}`);
  return { email, password: PASSWORD };
}

export type Browserish = {
  cookies: Map<string, string>;
  get(path: string, headers?: Record<string, string>): Promise<{ status: number; text: string; location: string | null; setCookie: string[] }>;
  post(path: string, form: Record<string, string>, headers?: Record<string, string>): Promise<{ status: number; text: string; location: string | null; setCookie: string[] }>;
};

/** A client that keeps cookies, follows nothing (the test reads each redirect), and posts as a same-origin form unless told otherwise. */
export function browserish(c: TestCluster): Browserish {
  const cookies = new Map<string, string>();
  const send = async (method: string, path: string, body: string | undefined, headers: Record<string, string>) => {
    const res = await fetch(c.url + path, {
      method, redirect: 'manual', body,
      headers: {
        accept: 'text/html', ...(cookies.size ? { cookie: [...cookies].map(([k, v]) => `${k}=${v}`).join('; ') } : {}),
        ...(body !== undefined ? { 'content-type': 'application/x-www-form-urlencoded', origin: c.url } : {}), ...headers,
      },
    });
    const setCookie = res.headers.getSetCookie();
    for (const line of setCookie) {
      const [pair] = line.split(';');
      const [k, ...v] = pair!.split('=');
      const value = v.join('=');
      if (!value || /max-age=0/i.test(line)) cookies.delete(k!.trim());
      else cookies.set(k!.trim(), value);
    }
    return { status: res.status, text: await res.text(), location: res.headers.get('location'), setCookie };
  };
  return {
    cookies,
    get: (path, headers = {}) => send('GET', path, undefined, headers),
    post: (path, form, headers = {}) => send('POST', path, new URLSearchParams(form).toString(), headers),
  };
}

/** Signed in through the login form. */
export async function signedIn(c: TestCluster, who: { email: string; password: string }): Promise<Browserish> {
  const b = browserish(c);
  const r = await b.post('/admin/login', { email: who.email, password: who.password, next: '/admin' });
  if (r.status !== 303) throw new Error(`sign-in as ${who.email}: ${r.status} ${r.text.slice(0, 300)}`);
  return b;
}
