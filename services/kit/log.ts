// JSON logs through pino. The request id rides along as a child binding, so every
// line caused by one request (HTTP or a NATS message that carries it) shows it.
import { pino, type Logger } from 'pino';

export type { Logger };

/** A root logger. `const log = createLogger({ level: 'info', name: 'orderflow' })` */
export function createLogger(opts: { level?: string; name?: string; destination?: NodeJS.WritableStream } = {}): Logger {
  return pino(
    {
      level: opts.level ?? 'info', name: opts.name ?? 'orderflow', base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime,
      // "level":"warn", not 40: people and log pipelines read the name.
      formatters: { level: (label) => ({ level: label }) },
    },
    opts.destination ?? pino.destination({ sync: false }),
  );
}
