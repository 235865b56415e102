// CPU seconds used by processes on this machine between two snapshots, from /proc. With a
// loaded machine, throughput moves with the neighbours; CPU time per request does not.
import { readdirSync, readFileSync } from 'node:fs';

export type Snapshot = Map<number, { cmd: string; seconds: number }>;

/** `const a = snapshot(); ...; cpuSeconds(a, snapshot(), (p) => p.pid === child.pid)` */
export function snapshot(): Snapshot {
  const out: Snapshot = new Map();
  const tick = 100; // USER_HZ on Linux
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ');
      out.set(Number(pid), { cmd, seconds: (Number(f[11]) + Number(f[12])) / tick });
    } catch { /* gone */ }
  }
  return out;
}

export function cpuSeconds(a: Snapshot, b: Snapshot, match: (p: { pid: number; cmd: string }) => boolean): number {
  let t = 0;
  for (const [pid, v] of b) if (match({ pid, cmd: v.cmd })) t += v.seconds - (a.get(pid)?.seconds ?? 0);
  return t;
}
