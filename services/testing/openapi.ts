// Every answer the test clients get is checked against the cluster's own /openapi.json
// (the test cluster's ApiClient does it): the document is generated from the route
// declarations, so a handler answering other than it declared fails the test that hit it.
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';

type Spec = { paths: Record<string, Record<string, { responses?: Record<string, { content?: Record<string, unknown> }> }>> };
export type ResponseCheck = (method: string, path: string, status: number, body: unknown, contentType: string | null) => string | null;

const escape = (s: string) => s.replaceAll('~', '~0').replaceAll('/', '~1');

/** `const check = responseChecker(await (await fetch(url + '/openapi.json')).json()); check('GET', '/api/orders/x', 404, body, 'application/json') // null when it fits` */
export function responseChecker(spec: Spec): ResponseCheck {
  const ajv = new Ajv2020({ strict: false, allErrors: false });
  (addFormats as unknown as (a: Ajv2020) => void)(ajv);
  const id = 'https://orderflow.test/openapi.json';
  ajv.addSchema({ ...spec, $id: id });
  const templates = Object.keys(spec.paths).map((t) => ({ t, re: new RegExp(`^${t.split(/\{\w+\}/).map((x) => x.replace(/[.*+?^$()|[\]\\]/g, '\\$&')).join('[^/]+')}$`) }));
  const compiled = new Map<string, ReturnType<Ajv2020['compile']>>();
  return (method, rawPath, status, body, contentType) => {
    const path = rawPath.split('?')[0]!;
    const m = method.toLowerCase();
    // The most specific template: a static segment beats a parameter.
    const hits = templates.filter((x) => x.re.test(path) && spec.paths[x.t]![m]);
    if (!hits.length) return null; // not a declared route (simulators' /_dev pages): nothing to check
    const t = hits.sort((a, b) => (a.t.match(/\{/g)?.length ?? 0) - (b.t.match(/\{/g)?.length ?? 0))[0]!.t;
    const responses = spec.paths[t]![m]!.responses ?? {};
    const key = responses[String(status)] ? String(status) : responses.default ? 'default' : undefined;
    if (!key) return `${method} ${t} answered ${status}, a status the document does not list`;
    if (!responses[key]!.content?.['application/json']) return null;
    if (!contentType?.includes('application/json')) return `${method} ${t} answered ${status} with ${contentType ?? 'no content type'}, not JSON`;
    const ref = `${id}#/paths/${escape(t)}/${m}/responses/${key}/content/application~1json/schema`;
    let validate = compiled.get(ref);
    if (!validate) { validate = ajv.compile({ $ref: ref }); compiled.set(ref, validate); }
    return validate(body) ? null : `${method} ${t} answered ${status} with a body the document does not allow: ${ajv.errorsText(validate.errors)} in ${JSON.stringify(body).slice(0, 300)}`;
  };
}
