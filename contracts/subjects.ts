// NATS subject syntax, and nothing of any domain: the kit (the DLQ's subject filter) and
// the message table (messages.ts) both read patterns with it, and the kit may import
// only what stays this generic from contracts/.

/** Whether `subject` falls under the NATS pattern (`*` one token, `>` the rest). `subjectMatches('saga.step.*', 'saga.step.paid') // true` */
export function subjectMatches(pattern: string, subject: string): boolean {
  const p = pattern.split('.');
  const s = subject.split('.');
  for (let i = 0; i < p.length; i++) {
    if (p[i] === '>') return s.length > i;
    if (p[i] !== '*' && p[i] !== s[i]) return false;
  }
  return p.length === s.length;
}
