// CPU seconds used by processes on this machine between two snapshots, from /proc. With a
// loaded machine, throughput moves with the neighbours; CPU time per request does not.
// Each entry also carries its parent (to find a Postgres server's backends) and its
// resident memory (bench:load reports memory per component).
import { readdirSync, readFileSync } from 'node:fs';

export type Snapshot = Map<number, { cmd: string; seconds: number; ppid: number; rssBytes: number }>;

const PAGE = 4096; // bytes per page on x86-64 and arm64 Linux

/** `const a = snapshot(); ...; cpuSeconds(a, snapshot(), (p) => p.pid === child.pid)` */
export function snapshot(): Snapshot {
  const out: Snapshot = new Map();
  const tick = 100; // USER_HZ on Linux
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      // Fields after the command name: state, ppid, ..., utime (11), stime (12), ..., rss (21).
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ');
      out.set(Number(pid), { cmd, seconds: (Number(f[11]) + Number(f[12])) / tick, ppid: Number(f[1]), rssBytes: Number(f[21]) * PAGE });
    } catch { /* gone */ }
  }
  return out;
}

export function cpuSeconds(a: Snapshot, b: Snapshot, match: (p: { pid: number; cmd: string; ppid: number }) => boolean): number {
  let t = 0;
  for (const [pid, v] of b) if (match({ pid, cmd: v.cmd, ppid: v.ppid })) t += v.seconds - (a.get(pid)?.seconds ?? 0);
  return t;
}

/** Resident memory summed over the processes `match` picks in one snapshot (shared pages count once per process). */
export function rssBytes(s: Snapshot, match: (p: { pid: number; cmd: string; ppid: number }) => boolean): number {
  let t = 0;
  for (const [pid, v] of s) if (match({ pid, cmd: v.cmd, ppid: v.ppid })) t += v.rssBytes;
  return t;
}
