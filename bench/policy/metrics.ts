// Results of the policy benchmark: what one run records, the derived figures
// (need covered, time to cover, expected shares) and the tables. Pure.
import { changePercent, mean, stdev } from '../overcommit/report.js';

export type ScenarioName = 'idle-neighbour' | 'page-cache' | 'weights';

export interface VmResult {
  name: string;
  ramMiB: number;
  weight?: number;
  /** Balloon (guest RAM - QEMU's `actual`) at the end and at its largest. */
  balloonEndMiB: number;
  balloonPeakMiB: number;
  /** QEMU's RssShmem (guest RAM resident on the host) before the squeeze and at the end. */
  rssBeforeMiB: number;
  rssEndMiB: number;
  /** Guest's MemAvailable before the squeeze (null: no report came). */
  availBeforeMiB: number | null;
  /** The guest's own counters over the squeeze (null: no report). */
  guestSwapOut: number | null;
  guestOomKills: number | null;
  /** page-cache: Buffers + Cached (MiB) before the read, after it, before the squeeze, at the end. */
  cache?: { diskMiB: number; beforeReadMiB: number; afterReadMiB: number; heldMiB: number; endMiB: number | null };
  /** page-cache: allocations of the growing guest that failed. */
  allocFailed?: number;
  /** The daemon's host pressure events for this VM (ours only). */
  daemonHostEvents?: number;
}

export interface RunResult {
  scenario: ScenarioName;
  arm: string;
  run: number;
  /** Host /proc/vmstat deltas over the squeeze, 4 KiB pages: machine-wide, other jobs' swap included. */
  hostSwapOut: number;
  hostSwapIn: number;
  /**
   * The host swap-out of this run: the rises of the memcg's swap use
   * (memory.stat swap), sampled every 0.5 s, summed, MiB. A page swapped out
   * and back within one sample is missed: a lower bound.
   */
  memcgSwapOutMiB: number;
  /** Major faults charged to the memcg over the squeeze (guest RAM swapped back in among them). */
  memcgMajorFaults: number;
  /** The memcg's own swap use (memory.stat), MiB. */
  memcgSwapPeakMiB: number;
  memcgSwapEndMiB: number;
  hostOomKills: number;
  limitMiB: number;
  /** memcg usage just before the squeeze. */
  baselineMiB: number;
  /** What squeezes: the neighbour's size (idle-neighbour, weights), the guest's growth (page-cache). */
  squeezeMiB: number;
  /** baseline + squeeze - limit: what must come back for the squeeze to fit without swap. */
  needMiB: number;
  /** First limit hit (memcg failcnt) after the squeeze began, s since its start; null: none. */
  firstEventS: number | null;
  /** From the first event until the balloons together first reached the need; null: never, or no event. */
  coveredAfterS: number | null;
  /** From the start of the squeeze until the balloons first reached the need (also without any limit hit); null: never. */
  coveredFromSqueezeS?: number | null;
  /** The neighbour finished its allocation (not OOM-killed, not timed out). */
  squeezeDone: boolean;
  vms: VmResult[];
  /** /proc/loadavg (1, 5, 15 min) at the start and the end of the run: the machine is shared. */
  loadAvg?: { start: number[]; end: number[] };
  /** Ours: the daemon's decisions at the end (host-wide, and per VM), as `balloonctl history` gives them. */
  history?: { host: unknown[]; vms: Record<string, unknown[]> };
}

export interface Sample { t: number; guest: string; balloonMiB: number }

const MiB = 2 ** 20;
export const toMiB = (bytes: number): number => bytes / MiB;

/** baseline + squeeze - limit, never below 0. */
export const needOf = (baselineMiB: number, squeezeMiB: number, limitMiB: number): number => Math.max(0, baselineMiB + squeezeMiB - limitMiB);

/**
 * Seconds from the first host event until the sum of the balloons first
 * reached needMiB (samples: t since the squeeze began). null when there was
 * no event, no need, or the need was never covered.
 */
export function coveredAfter(samples: readonly Sample[], guests: readonly string[], needMiB: number, firstEventS: number | null): number | null {
  if (firstEventS === null || needMiB <= 0) return null;
  const last = new Map<string, number>();
  for (const s of [...samples].sort((a, b) => a.t - b.t)) {
    if (!guests.includes(s.guest)) continue;
    last.set(s.guest, s.balloonMiB);
    const total = [...last.values()].reduce((a, b) => a + b, 0);
    if (total >= needMiB) return Math.max(0, s.t - firstEventS);
  }
  return null;
}

/**
 * What each VM can spare: MemAvailable above its reserve (the larger of
 * reservePercent of its RAM and reserveMiB).
 */
export const spareOf = (availMiB: number | null, ramMiB: number, reservePercent: number, reserveMiB = 0): number =>
  (availMiB === null ? 0 : Math.max(0, availMiB - Math.max(reserveMiB, (ramMiB * reservePercent) / 100)));

/**
 * Split `total` in proportion to weight x spare, capped at each spare; what a
 * capped VM cannot take goes to the others (water-filling). The definition of
 * src/policy/host.ts's split.
 */
export function expectedSplit(total: number, spares: readonly number[], weights: readonly number[]): number[] {
  const out = spares.map(() => 0);
  let left = Math.min(total, spares.reduce((a, b) => a + b, 0));
  let open = spares.map((s, i) => i).filter((i) => (spares[i] as number) > 0 && (weights[i] as number) > 0);
  while (left > 1e-9 && open.length) {
    const keys = open.map((i) => (weights[i] as number) * (spares[i] as number));
    const sum = keys.reduce((a, b) => a + b, 0);
    let given = 0;
    const still: number[] = [];
    open.forEach((i, k) => {
      const room = (spares[i] as number) - (out[i] as number);
      const give = Math.min(room, (left * (keys[k] as number)) / sum);
      out[i] = (out[i] as number) + give;
      given += give;
      if (room - give > 1e-9) still.push(i);
    });
    left -= given;
    if (still.length === open.length) break;
    open = still;
  }
  return out;
}

/**
 * Shares of the balloons against the expected split of their sum: per VM, and
 * the largest relative error. Spare: MemAvailable above the reserve; with
 * `backedOnly`, less the guest RAM the host never backed (RAM - RssShmem
 * before the squeeze), which ballooning frees nothing of.
 */
export function shareErrors(vms: readonly VmResult[], reservePercent: number, backedOnly = false): { rows: Array<{ vm: string; weight: number; spareMiB: number; balloonMiB: number; share: number; expected: number; errorPercent: number }>; maxErrorPercent: number } {
  const spares = vms.map((v) => Math.max(0, spareOf(v.availBeforeMiB, v.ramMiB, reservePercent) - (backedOnly ? Math.max(0, v.ramMiB - v.rssBeforeMiB) : 0)));
  const weights = vms.map((v) => v.weight ?? 1);
  const total = vms.reduce((a, v) => a + v.balloonEndMiB, 0);
  const exp = expectedSplit(total, spares, weights);
  const rows = vms.map((v, i) => {
    const share = total > 0 ? v.balloonEndMiB / total : 0;
    const expected = total > 0 ? (exp[i] as number) / total : 0;
    return { vm: v.name, weight: weights[i] as number, spareMiB: spares[i] as number, balloonMiB: v.balloonEndMiB, share, expected,
      errorPercent: expected > 0 ? (Math.abs(share - expected) / expected) * 100 : (share > 0 ? Infinity : 0) };
  });
  return { rows, maxErrorPercent: total > 0 ? Math.max(0, ...rows.map((r) => r.errorPercent)) : NaN };
}

// --- tables -----------------------------------------------------------------------

const f = (x: number | null | undefined, d = 0): string => {
  if (x === null || x === undefined || !Number.isFinite(x)) return '-';
  const t = x.toFixed(d);
  return Number(t) === 0 ? (0).toFixed(d) : t;
};
const present = (xs: Array<number | null | undefined>): number[] => xs.filter((x): x is number => x !== null && x !== undefined && Number.isFinite(x));
const m = (xs: Array<number | null | undefined>): number => mean(present(xs));
const msd = (xs: number[], d = 0): string => `${f(mean(xs), d)}${xs.length > 1 ? ` ± ${f(stdev(xs), d)}` : ''}`;
const byArm = (rs: readonly RunResult[]): Array<[string, RunResult[]]> =>
  [...new Set(rs.map((r) => r.arm))].map((a) => [a, rs.filter((r) => r.arm === a)]);
const sumVms = (r: RunResult, k: (v: VmResult) => number | null): number | null => {
  const xs = r.vms.map(k);
  return xs.some((x) => x === null) ? null : (xs as number[]).reduce((a, b) => a + b, 0);
};
/** Runs that covered the need / runs, and how many never hit the limit (no first event). */
const coveredCount = (rs: RunResult[]): string => {
  const none = rs.filter((r) => r.firstEventS === null).length;
  return `${rs.filter((r) => r.coveredAfterS !== null).length}/${rs.length}${none ? `; ${none} without a limit hit` : ''}`;
};

function idleNeighbourTable(rs: readonly RunResult[]): string {
  const arms = byArm(rs);
  const base = arms[0]?.[1];
  const rows = ['| arm | runs | host swap-out (memcg), MiB (vs first arm) | memcg swap peak, MiB | memcg major faults | need, MiB | balloon at end, MiB | need covered | neighbour growth covered | guest swap-out, pages | guest OOM kills | first event, s | covered after, s (runs covered) | QEMU RssShmem drop, MiB | machine pswpout, pages |',
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |'];
  for (const [arm, xs] of arms) {
    const swap = xs.map((r) => r.memcgSwapOutMiB);
    const vs = base && xs !== base ? ` (${f(changePercent(mean(base.map((r) => r.memcgSwapOutMiB)), mean(swap)), 1)} %)` : '';
    const balloon = xs.map((r) => r.vms.reduce((a, v) => a + v.balloonEndMiB, 0));
    const need = m(xs.map((r) => r.needMiB));
    const cov = m(xs.map((r, i) => (r.needMiB > 0 ? Math.min(1, (balloon[i] as number) / r.needMiB) * 100 : null)));
    const growth = m(xs.map((r, i) => (r.squeezeMiB > 0 ? ((balloon[i] as number) / r.squeezeMiB) * 100 : null)));
    const returned = m(xs.map((r) => r.vms.reduce((a, v) => a + v.rssBeforeMiB - v.rssEndMiB, 0)));
    rows.push(`| ${arm} | ${xs.length} | ${msd(swap)}${vs} | ${f(m(xs.map((r) => r.memcgSwapPeakMiB)))} | ${f(m(xs.map((r) => r.memcgMajorFaults)))} | ${f(need)} | ${f(mean(balloon))} | ${f(cov)} % | ${f(growth)} % | ${f(m(xs.map((r) => sumVms(r, (v) => v.guestSwapOut))))} | ${f(m(xs.map((r) => sumVms(r, (v) => v.guestOomKills))))} | ${f(m(xs.map((r) => r.firstEventS)), 1)} | ${f(m(xs.map((r) => r.coveredAfterS)), 1)} (${coveredCount(xs)}) | ${f(returned)} | ${f(m(xs.map((r) => r.hostSwapOut)))} |`);
  }
  return rows.join('\n');
}

function pageCacheTable(rs: readonly RunResult[]): string {
  const arms = byArm(rs);
  const base = arms[0]?.[1];
  const rows = ['| arm | runs | host swap-out (memcg), MiB (vs first arm) | memcg swap peak, MiB | need, MiB | balloon cache guest / growing guest, MiB | from the cache guest | cache held after read / before squeeze / at end, MiB | guest swap-out cache / growing | guest OOM kills | failed allocations (growing) | covered after, s (runs covered) | machine pswpout, pages |',
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |'];
  for (const [arm, xs] of arms) {
    const swap = xs.map((r) => r.memcgSwapOutMiB);
    const vs = base && xs !== base ? ` (${f(changePercent(mean(base.map((r) => r.memcgSwapOutMiB)), mean(swap)), 1)} %)` : '';
    const c = (r: RunResult) => r.vms.find((v) => v.cache);
    const g = (r: RunResult) => r.vms.find((v) => !v.cache);
    const bc = xs.map((r) => c(r)?.balloonEndMiB ?? 0);
    const bg = xs.map((r) => g(r)?.balloonEndMiB ?? 0);
    const from = m(xs.map((_r, i) => ((bc[i] as number) + (bg[i] as number) > 0 ? ((bc[i] as number) / ((bc[i] as number) + (bg[i] as number))) * 100 : null)));
    rows.push(`| ${arm} | ${xs.length} | ${msd(swap)}${vs} | ${f(m(xs.map((r) => r.memcgSwapPeakMiB)))} | ${f(m(xs.map((r) => r.needMiB)))} | ${f(mean(bc))} / ${f(mean(bg))} | ${f(from)} % | ${f(m(xs.map((r) => c(r)?.cache?.afterReadMiB)))} / ${f(m(xs.map((r) => c(r)?.cache?.heldMiB)))} / ${f(m(xs.map((r) => c(r)?.cache?.endMiB)))} | ${f(m(xs.map((r) => c(r)?.guestSwapOut)))} / ${f(m(xs.map((r) => g(r)?.guestSwapOut)))} | ${f(m(xs.map((r) => sumVms(r, (v) => v.guestOomKills))))} | ${f(m(xs.map((r) => g(r)?.allocFailed)))} | ${f(m(xs.map((r) => r.coveredAfterS)), 1)} (${coveredCount(xs)}) | ${f(m(xs.map((r) => r.hostSwapOut)))} |`);
  }
  return rows.join('\n');
}

function weightsTable(rs: readonly RunResult[], reservePercent: number): string {
  // Two references for "what the guests could spare": MemAvailable above the reserve, and that less
  // the RAM the host never backed (what ballooning can give the host back).
  const rows = ['| arm | run | host swap-out (memcg), MiB | need, MiB | balloons, MiB | VM: weight, spare MiB, balloon MiB, share (expected) | largest share error | spare less never-backed: VM spare MiB, expected share | largest share error, backed spare | guest OOM kills |',
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |'];
  for (const r of rs) {
    const s = shareErrors(r.vms, reservePercent);
    const b = shareErrors(r.vms, reservePercent, true);
    const vms = s.rows.map((x) => `${x.vm}: w${x.weight}, ${f(x.spareMiB)}, ${f(x.balloonMiB)}, ${f(x.share * 100)} % (${f(x.expected * 100)} %)`).join('; ');
    const backed = b.rows.map((x) => `${x.vm}: ${f(x.spareMiB)}, ${f(x.expected * 100)} %`).join('; ');
    rows.push(`| ${r.arm} | ${r.run} | ${f(r.memcgSwapOutMiB)} | ${f(r.needMiB)} | ${f(r.vms.reduce((a, v) => a + v.balloonEndMiB, 0))} | ${vms} | ${f(s.maxErrorPercent, 1)} % | ${backed} | ${f(b.maxErrorPercent, 1)} % | ${f(sumVms(r, (v) => v.guestOomKills))} |`);
  }
  return rows.join('\n');
}

/** Median of the values present, and their range. */
export function medianRange(xs: Array<number | null | undefined>): { median: number; min: number; max: number; n: number } {
  const v = present(xs).sort((a, b) => a - b);
  const n = v.length;
  const median = n === 0 ? NaN : n % 2 ? (v[(n - 1) / 2] as number) : ((v[n / 2 - 1] as number) + (v[n / 2] as number)) / 2;
  return { median, min: n ? (v[0] as number) : NaN, max: n ? (v[n - 1] as number) : NaN, n };
}
const mr = (xs: Array<number | null | undefined>, d = 0): string => {
  const r = medianRange(xs);
  return r.n === 0 ? '-' : r.n === 1 ? f(r.median, d) : `${f(r.median, d)} [${f(r.min, d)}-${f(r.max, d)}]`;
};

/** Per arm: medians [min-max] over its runs of the figures the targets are judged on. */
export function mediansTable(rs: readonly RunResult[]): string {
  const rows = ['| arm | runs | host swap-out (memcg), MiB | need, MiB | balloons at end, MiB | need covered, % | guest swap-out, pages (all guests) | guest OOM kills | covered after first event, s (runs covered) | covered after squeeze start, s (runs covered) | load avg 1 min at start |',
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |'];
  for (const [arm, xs] of byArm(rs)) {
    const balloon = xs.map((r) => r.vms.reduce((a, v) => a + v.balloonEndMiB, 0));
    rows.push(`| ${arm} | ${xs.length} | ${mr(xs.map((r) => r.memcgSwapOutMiB))} | ${mr(xs.map((r) => r.needMiB))} | ${mr(balloon)} | ${mr(xs.map((r, i) => (r.needMiB > 0 ? Math.min(1, (balloon[i] as number) / r.needMiB) * 100 : null)))} | ${mr(xs.map((r) => sumVms(r, (v) => v.guestSwapOut)))} | ${mr(xs.map((r) => sumVms(r, (v) => v.guestOomKills)))} | ${mr(xs.map((r) => r.coveredAfterS), 1)} (${coveredCount(xs)}) | ${mr(xs.map((r) => r.coveredFromSqueezeS), 1)} (${xs.filter((r) => r.coveredFromSqueezeS !== null && r.coveredFromSqueezeS !== undefined).length}/${xs.length}) | ${mr(xs.map((r) => r.loadAvg?.start[0]), 1)} |`);
  }
  return rows.join('\n');
}

/** One row per run, in the order they ran. */
export function runsTable(rs: readonly RunResult[]): string {
  const rows = ['| # | arm | run | load avg start / end | host swap-out (memcg), MiB | need, MiB | balloon per VM at end (peak), MiB | guest swap-out per VM, pages | guest OOM kills | first event, s | covered after, s | covered after squeeze start, s |',
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |'];
  rs.forEach((r, i) => {
    const l = r.loadAvg ? `${f(r.loadAvg.start[0], 2)} / ${f(r.loadAvg.end[0], 2)}` : '-';
    rows.push(`| ${i + 1} | ${r.arm} | ${r.run} | ${l} | ${f(r.memcgSwapOutMiB)} | ${f(r.needMiB)} | ${r.vms.map((v) => `${v.name} ${f(v.balloonEndMiB)} (${f(v.balloonPeakMiB)})`).join(', ')} | ${r.vms.map((v) => f(v.guestSwapOut)).join(' / ')} | ${f(sumVms(r, (v) => v.guestOomKills))} | ${r.firstEventS === null ? 'none' : f(r.firstEventS, 1)} | ${f(r.coveredAfterS, 1)} | ${f(r.coveredFromSqueezeS, 1)} |`);
  });
  return rows.join('\n');
}

/** The markdown table of a scenario's runs (one row per arm; weights: one per run). */
export function scenarioTable(scenario: ScenarioName, rs: readonly RunResult[], reservePercent: number): string {
  switch (scenario) {
    case 'idle-neighbour': return idleNeighbourTable(rs);
    case 'page-cache': return pageCacheTable(rs);
    case 'weights': return weightsTable(rs, reservePercent);
  }
}
