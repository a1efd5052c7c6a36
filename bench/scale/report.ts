// Pure parts of the scale benchmark (bench/scale.ts): the results' shape,
// /proc parsing, medians and spreads per (arm, N), marginal PSS per device,
// and the markdown tables. No I/O.
import { median, percentile, procCpuTicks } from '../device/report.js';

export { median, percentile, procCpuTicks };

/** 'host': one --host daemon with N devices; 'per-vm': N single-VM daemons (--socket-path). */
export type Arm = 'host' | 'per-vm';
export const ARMS: readonly Arm[] = ['host', 'per-vm'];

/** Memory of one process, or summed over the arm's processes (KiB, /proc/PID/smaps_rollup and status). */
export interface Memory {
  rssKiB: number;
  pssKiB: number;
  pssAnonKiB: number;
  pssFileKiB: number;
  pssShmemKiB: number;
  /** Resident file pages (status RssFile): mostly node's own binary. */
  rssFileKiB: number;
}

/**
 * PSS if no other process mapped the same files: PSS splits node's resident
 * binary (~40 MiB) among every node process on the machine, here at least
 * the benchmark's own; a host whose only node process is the daemon pays all of it.
 */
export const aloneKiB = (m: Memory): number => m.pssAnonKiB + m.pssShmemKiB + m.rssFileKiB;

export interface RunResult {
  arm: Arm;
  n: number;
  run: number;
  /** Daemon processes measured (1 for host, N for per-vm). */
  processes: number;
  /** 1-minute load average when the run started (other work on the machine). */
  loadAvg: number;
  /** Daemon(s) started and every guest attached and served its first stats request. */
  setupSeconds: number;
  /** At the end of the idle window (before the inflates). */
  memory: Memory;
  /** PSS read every 5 s through the idle window: V8's heap grows and shrinks with its GC cycle. */
  idlePssKiB: { min: number; max: number; samples: number };
  /** After every device's inflates. */
  memoryAfterInflate: Memory;
  idle: {
    seconds: number;
    /** utime + stime over the window, all threads, all processes (clock ticks). */
    ticks: number;
    ticksPerSecond: number;
    /** ticks as a percentage of one core. */
    cpuPercent: number;
    /** On-CPU time of the main threads only (schedstat, ns precision). */
    mainThreadMs: number;
    /** On-CPU time of every thread (schedstat), for the precision ticks lack. */
    allThreadsMs: number;
    /** Stats requests the guests served in the window (5 s interval: about N * seconds / 5). */
    statsServed: number;
  };
  inflate: {
    buffersPerDevice: number;
    pfnsPerBuffer: number;
    /** Every buffer's post -> used-ring acknowledgement, all devices pooled (ms). */
    p50Ms: number;
    p99Ms: number;
    maxMs: number;
    /** The worst device's own p99 (ms). */
    worstDeviceP99Ms: number;
    /** First post to last acknowledgement over all devices (ms). */
    wallMs: number;
  };
}

export interface Results {
  command: string;
  startedAt: string;
  finishedAt: string;
  machine: { cpus: number; memTotalMiB: number; kernel: string; node: string };
  options: { sizes: number[]; arms: Arm[]; runs: number; idleSeconds: number; guestRamMiB: number; statsIntervalS: number; buffersPerDevice: number };
  runs: RunResult[];
}

/** The fields of /proc/PID/smaps_rollup that matter here. */
export function parseSmapsRollup(text: string): Omit<Memory, 'rssFileKiB'> {
  const field = (name: string): number => {
    const m = new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(text);
    if (!m) throw new Error(`smaps_rollup has no ${name}`);
    return Number(m[1]);
  };
  return { rssKiB: field('Rss'), pssKiB: field('Pss'), pssAnonKiB: field('Pss_Anon'), pssFileKiB: field('Pss_File'), pssShmemKiB: field('Pss_Shmem') };
}

/** RssFile of /proc/PID/status (KiB). */
export function parseRssFile(status: string): number {
  const m = /^RssFile:\s+(\d+) kB/m.exec(status);
  if (!m) throw new Error('status has no RssFile');
  return Number(m[1]);
}

export function addMemory(a: Memory, b: Memory): Memory {
  return {
    rssKiB: a.rssKiB + b.rssKiB, pssKiB: a.pssKiB + b.pssKiB, pssAnonKiB: a.pssAnonKiB + b.pssAnonKiB,
    pssFileKiB: a.pssFileKiB + b.pssFileKiB, pssShmemKiB: a.pssShmemKiB + b.pssShmemKiB, rssFileKiB: a.rssFileKiB + b.rssFileKiB,
  };
}

export const ZERO_MEMORY: Memory = { rssKiB: 0, pssKiB: 0, pssAnonKiB: 0, pssFileKiB: 0, pssShmemKiB: 0, rssFileKiB: 0 };

/** On-CPU nanoseconds: the first field of /proc/PID/task/TID/schedstat. */
export function schedstatNs(text: string): number {
  const ns = Number(text.trim().split(/\s+/)[0]);
  if (!Number.isFinite(ns)) throw new Error(`not a schedstat line: ${text.slice(0, 80)}`);
  return ns;
}

/** Per-device latency figures from each device's acknowledgement times (ms). */
export function inflateFigures(perDevice: number[][]): { p50Ms: number; p99Ms: number; maxMs: number; worstDeviceP99Ms: number } {
  const all = perDevice.flat().sort((a, b) => a - b);
  const p99s = perDevice.filter((xs) => xs.length > 0).map((xs) => percentile([...xs].sort((a, b) => a - b), 0.99));
  const worst = p99s.length ? Math.max(...p99s) : Number.NaN;
  return { p50Ms: percentile(all, 0.5), p99Ms: percentile(all, 0.99), maxMs: all.at(-1) ?? Number.NaN, worstDeviceP99Ms: worst };
}

/** Median and spread of one figure over runs. */
export interface Spread {
  median: number;
  min: number;
  max: number;
}

export function spread(xs: number[]): Spread {
  const ok = xs.filter(Number.isFinite);
  if (ok.length === 0) return { median: Number.NaN, min: Number.NaN, max: Number.NaN };
  return { median: median(ok), min: Math.min(...ok), max: Math.max(...ok) };
}

export interface Cell {
  arm: Arm;
  n: number;
  runs: number;
  rssMiB: Spread;
  pssMiB: Spread;
  pssAnonMiB: Spread;
  /** Lowest and highest PSS of the idle window's readings, over all runs. */
  idlePssMinMiB: number;
  idlePssMaxMiB: number;
  aloneMiB: Spread;
  pssAfterInflateMiB: Spread;
  idleCpuPercent: Spread;
  mainThreadMsPer30s: Spread;
  inflateP50Ms: Spread;
  inflateP99Ms: Spread;
  worstDeviceP99Ms: Spread;
  loadAvg: Spread;
}

/** One cell per (arm, N) present in the runs, arms in ARMS order, N ascending. */
export function summarize(runs: RunResult[]): Cell[] {
  const cells: Cell[] = [];
  for (const arm of ARMS) {
    const sizes = [...new Set(runs.filter((r) => r.arm === arm).map((r) => r.n))].sort((a, b) => a - b);
    for (const n of sizes) {
      const rs = runs.filter((r) => r.arm === arm && r.n === n);
      const of = (f: (r: RunResult) => number) => spread(rs.map(f));
      cells.push({
        arm, n, runs: rs.length,
        rssMiB: of((r) => r.memory.rssKiB / 1024),
        pssMiB: of((r) => r.memory.pssKiB / 1024),
        pssAnonMiB: of((r) => r.memory.pssAnonKiB / 1024),
        idlePssMinMiB: Math.min(...rs.map((r) => r.idlePssKiB?.min ?? r.memory.pssKiB)) / 1024,
        idlePssMaxMiB: Math.max(...rs.map((r) => r.idlePssKiB?.max ?? r.memory.pssKiB)) / 1024,
        aloneMiB: of((r) => (r.memory.rssFileKiB === undefined ? Number.NaN : aloneKiB(r.memory) / 1024)),
        pssAfterInflateMiB: of((r) => r.memoryAfterInflate.pssKiB / 1024),
        idleCpuPercent: of((r) => r.idle.cpuPercent),
        mainThreadMsPer30s: of((r) => (r.idle.mainThreadMs * 30) / r.idle.seconds),
        inflateP50Ms: of((r) => r.inflate.p50Ms),
        inflateP99Ms: of((r) => r.inflate.p99Ms),
        worstDeviceP99Ms: of((r) => r.inflate.worstDeviceP99Ms),
        loadAvg: of((r) => r.loadAvg),
      });
    }
  }
  return cells;
}

export interface Marginal {
  arm: Arm;
  from: number;
  to: number;
  /** (median PSS at `to` - median PSS at `from`) / (to - from), KiB per device. */
  kibPerDevice: number;
  /** The same slope from the runs' extremes (lowest from highest, highest from lowest): the noise band. */
  minKiB: number;
  maxKiB: number;
}

/** Marginal PSS per device between consecutive sizes of each arm, and from the smallest to the largest. */
export function marginalPss(cells: Cell[]): Marginal[] {
  const out: Marginal[] = [];
  for (const arm of ARMS) {
    const cs = cells.filter((c) => c.arm === arm);
    const pairs: Array<[Cell, Cell]> = [];
    for (let i = 1; i < cs.length; i++) pairs.push([cs[i - 1]!, cs[i]!]);
    if (cs.length > 2) pairs.push([cs[0]!, cs.at(-1)!]);
    for (const [a, b] of pairs) {
      const dn = b.n - a.n;
      out.push({
        arm, from: a.n, to: b.n,
        kibPerDevice: ((b.pssMiB.median - a.pssMiB.median) * 1024) / dn,
        minKiB: ((b.pssMiB.min - a.pssMiB.max) * 1024) / dn,
        maxKiB: ((b.pssMiB.max - a.pssMiB.min) * 1024) / dn,
      });
    }
  }
  return out;
}

const fixed = (x: number, d: number) => (Number.isFinite(x) ? x.toFixed(d) : '-');
/** "median (min-max)". */
export function cellText(s: Spread, d: number): string {
  if (!Number.isFinite(s.median)) return '-';
  return s.min === s.max ? `${fixed(s.median, d)}` : `${fixed(s.median, d)} (${fixed(s.min, d)}-${fixed(s.max, d)})`;
}

/** The side-by-side table (rows: N; per arm: PSS, RSS, idle CPU, inflate p50/p99), then marginal PSS. */
export function markdownTables(r: Pick<Results, 'runs'>): string {
  const cells = summarize(r.runs);
  const sizes = [...new Set(cells.map((c) => c.n))].sort((a, b) => a - b);
  const arms = ARMS.filter((a) => cells.some((c) => c.arm === a));
  const get = (arm: Arm, n: number) => cells.find((c) => c.arm === arm && c.n === n);
  const lines: string[] = [];
  lines.push('| N | arm | runs | PSS MiB | PSS range in idle window | PSS alone MiB | PSS anon MiB | RSS MiB | PSS after inflate MiB | idle CPU % of a core | main thread ms / 30 s | inflate p50 ms | inflate p99 ms | worst device p99 ms |');
  lines.push('| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
  for (const n of sizes) {
    for (const arm of arms) {
      const c = get(arm, n);
      if (!c) continue;
      lines.push(`| ${n} | ${arm} | ${c.runs} | ${cellText(c.pssMiB, 1)} | ${fixed(c.idlePssMinMiB, 1)}-${fixed(c.idlePssMaxMiB, 1)} | ${cellText(c.aloneMiB, 1)} | `
        + `${cellText(c.pssAnonMiB, 1)} | ${cellText(c.rssMiB, 1)} | ${cellText(c.pssAfterInflateMiB, 1)} | `
        + `${cellText(c.idleCpuPercent, 2)} | ${cellText(c.mainThreadMsPer30s, 0)} | ${cellText(c.inflateP50Ms, 2)} | ${cellText(c.inflateP99Ms, 2)} | ${cellText(c.worstDeviceP99Ms, 2)} |`);
    }
  }
  const m = marginalPss(cells);
  if (m.length) {
    lines.push('', '| arm | N from -> to | marginal PSS KiB per device (from medians) | band (from run extremes) |', '| --- | --- | ---: | --- |');
    for (const x of m) lines.push(`| ${x.arm} | ${x.from} -> ${x.to} | ${fixed(x.kibPerDevice, 0)} | ${fixed(x.minKiB, 0)} to ${fixed(x.maxKiB, 0)} |`);
  }
  return lines.join('\n');
}
