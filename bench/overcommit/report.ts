// Pure parts of the overcommit experiment: counter parsing, deltas, means,
// and the seed-style table. No I/O.

/** minflt and majflt of a /proc/PID/stat line (fields 10 and 12; comm may hold spaces). */
export function procFaults(stat: string): { minflt: number; majflt: number } {
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // rest[0] is field 3 (state): field n is rest[n - 3].
  const minflt = Number(rest[7]);
  const majflt = Number(rest[9]);
  if (!Number.isFinite(minflt) || !Number.isFinite(majflt)) throw new Error(`not a /proc/PID/stat line: ${stat.slice(0, 80)}`);
  return { minflt, majflt };
}

/** pswpin / pswpout (pages) of /proc/vmstat. */
export function vmstatSwap(text: string): { pswpin: number; pswpout: number } {
  const get = (k: string): number => {
    const m = new RegExp(`^${k} (\\d+)$`, 'm').exec(text);
    if (!m) throw new Error(`/proc/vmstat has no ${k}`);
    return Number(m[1]);
  };
  return { pswpin: get('pswpin'), pswpout: get('pswpout') };
}

/** One bizzy run in a guest: chunk count, records/s (0 if it failed), start and end (s since the experiment's start). */
export interface BizzyRun { chunks: number; rps: number; ok: boolean; start: number; end: number }

export interface GuestRun {
  name: 'vm-down' | 'vm-up';
  majorFaults: number;
  minorFaults: number;
  /** Sum of records/s over the guest's workload runs (the seed's "total recs"). */
  totalRecs: number;
  elapsedSeconds: number;
  failedRuns: number;
  /** The guest's own swap traffic (pages, its /proc/vmstat), when it had a swap disk. */
  guestSwapIn?: number;
  guestSwapOut?: number;
  /** Each workload run (results from before this field existed lack it). */
  runs?: BizzyRun[];
}

export interface ArmRun {
  arm: string;
  run: number;
  swapIn: number;
  swapOut: number;
  guests: GuestRun[];
  /** The host daemon's decisions at the end of the run (host arms only): balloonctl history. */
  history?: { host: unknown[]; vms: Record<string, unknown[]> };
}

export const mean = (xs: number[]): number => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : NaN);
/** Sample standard deviation (n - 1); NaN for fewer than 2 values. */
export const stdev = (xs: number[]): number => {
  if (xs.length < 2) return NaN;
  const m = mean(xs);
  return Math.sqrt(xs.reduce((a, x) => a + (x - m) ** 2, 0) / (xs.length - 1));
};
/** Mean of the values that are present; NaN when none is. */
const meanOf = (xs: (number | undefined)[]): number => mean(xs.filter((x): x is number => x !== undefined));

/** Means over runs, plus the spread of total recs from run to run. */
export interface GuestSummary extends Omit<GuestRun, 'runs'> { totalRecsSd: number }

export interface ArmSummary {
  arm: string;
  runs: number;
  swapIn: number;
  swapOut: number;
  guests: GuestSummary[];
}

/** Means over the runs of each arm, in first-seen arm order. */
export function summarize(runs: ArmRun[]): ArmSummary[] {
  const arms = [...new Set(runs.map((r) => r.arm))];
  return arms.map((arm) => {
    const rs = runs.filter((r) => r.arm === arm);
    const names = [...new Set(rs.flatMap((r) => r.guests.map((g) => g.name)))];
    return {
      arm, runs: rs.length,
      swapIn: mean(rs.map((r) => r.swapIn)),
      swapOut: mean(rs.map((r) => r.swapOut)),
      guests: names.map((name) => {
        const gs = rs.flatMap((r) => r.guests.filter((g) => g.name === name));
        return {
          name,
          majorFaults: mean(gs.map((g) => g.majorFaults)),
          minorFaults: mean(gs.map((g) => g.minorFaults)),
          totalRecs: mean(gs.map((g) => g.totalRecs)),
          totalRecsSd: stdev(gs.map((g) => g.totalRecs)),
          elapsedSeconds: mean(gs.map((g) => g.elapsedSeconds)),
          failedRuns: mean(gs.map((g) => g.failedRuns)),
          guestSwapIn: meanOf(gs.map((g) => g.guestSwapIn)),
          guestSwapOut: meanOf(gs.map((g) => g.guestSwapOut)),
        };
      }),
    };
  });
}

/** Change of b against a, percent (negative: fewer). */
export const changePercent = (a: number, b: number): number => (a === 0 ? (b === 0 ? 0 : Infinity) : ((b - a) / a) * 100);

const f = (x: number, d = 2): string => (Number.isFinite(x) ? x.toFixed(d) : String(x));

/** The seed's layout: per arm, host swap, then per QEMU elapsed, faults, total recs. */
export function seedTable(s: ArmSummary[]): string {
  const out: string[] = [];
  for (const a of s) {
    out.push(`${a.arm} (${a.runs} run${a.runs === 1 ? '' : 's'})`, '='.repeat(a.arm.length), '');
    out.push('Host', '----', `swap in:  ${f(a.swapIn)}`, `swap out: ${f(a.swapOut)}`, '');
    out.push('QEMU (as a process in the host)', '-------------------------------');
    out.push('          Elapsed  major f.   minor f.    total recs');
    for (const g of a.guests) {
      out.push(`${(g.name + ':').padEnd(9)} ${f(g.elapsedSeconds).padStart(8)} ${f(g.majorFaults).padStart(9)} ${f(g.minorFaults).padStart(11)} ${f(g.totalRecs).padStart(12)}`);
    }
    out.push('');
    if (a.guests.some((g) => Number.isFinite(g.guestSwapOut))) {
      out.push('Guest (bizzy run in the guest)', '------------------------------');
      out.push('          total recs   swap in  swap out');
      for (const g of a.guests) {
        out.push(`${(g.name + ':').padEnd(9)} ${f(g.totalRecs).padStart(11)} ${f(g.guestSwapIn ?? NaN).padStart(9)} ${f(g.guestSwapOut ?? NaN).padStart(9)}`);
      }
      out.push('');
    }
  }
  return out.join('\n');
}

const recs = (g: GuestSummary | undefined): string =>
  (g ? `${f(g.totalRecs, 0)}${Number.isFinite(g.totalRecsSd) ? ` ± ${f(g.totalRecsSd, 0)}` : ''}` : 'NaN');
const opt = (x: number | undefined): string => (x !== undefined && Number.isFinite(x) ? f(x, 0) : '-');

/** Markdown: one row per arm, against the first arm (vanilla). */
export function markdownTable(s: ArmSummary[]): string {
  const base = s[0];
  const rows = ['| arm | runs | host swap in | host swap out (vs first arm) | QEMU major faults down / up | total recs down / up (± sd) | killed runs down / up | guest swap out down / up |',
    '| --- | --- | --- | --- | --- | --- | --- | --- |'];
  for (const a of s) {
    const g = (n: string) => a.guests.find((x) => x.name === n);
    const d = g('vm-down'); const u = g('vm-up');
    const vs = base && a !== base ? ` (${f(changePercent(base.swapOut, a.swapOut), 1)} %)` : '';
    rows.push(`| ${a.arm} | ${a.runs} | ${f(a.swapIn, 0)} | ${f(a.swapOut, 0)}${vs} | ${f(d?.majorFaults ?? NaN, 0)} / ${f(u?.majorFaults ?? NaN, 0)} | ${recs(d)} / ${recs(u)} | ${f(d?.failedRuns ?? NaN, 1)} / ${f(u?.failedRuns ?? NaN, 1)} | ${opt(d?.guestSwapOut)} / ${opt(u?.guestSwapOut)} |`);
  }
  return rows.join('\n');
}

export interface Sample { t: number; guest: string; balloonMiB: number }

/** An SVG of balloon size (MiB) over time, one polyline per guest. */
export function timelineSvg(title: string, samples: Sample[], width = 640, height = 240): string {
  const guests = [...new Set(samples.map((s) => s.guest))];
  const tMax = Math.max(1, ...samples.map((s) => s.t));
  const yMax = Math.max(32, ...samples.map((s) => s.balloonMiB));
  const L = 50, R = 10, T = 25, B = 30;
  const x = (t: number) => L + (t / tMax) * (width - L - R);
  const y = (v: number) => height - B - (v / yMax) * (height - T - B);
  const colours = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd'];
  const lines = guests.map((g, i) => {
    const pts = samples.filter((s) => s.guest === g).map((s) => `${x(s.t).toFixed(1)},${y(s.balloonMiB).toFixed(1)}`).join(' ');
    return `<polyline fill="none" stroke="${colours[i % colours.length]}" stroke-width="1.5" points="${pts}"/>` +
      `<text x="${width - R - 80}" y="${T + 14 * (i + 1)}" fill="${colours[i % colours.length]}" font-size="11">${g}</text>`;
  });
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="${L}" y="15" font-size="12">${title}</text>`,
    `<line x1="${L}" y1="${height - B}" x2="${width - R}" y2="${height - B}" stroke="black"/>`,
    `<line x1="${L}" y1="${T}" x2="${L}" y2="${height - B}" stroke="black"/>`,
    `<text x="${L - 5}" y="${T + 4}" font-size="10" text-anchor="end">${yMax.toFixed(0)} MiB</text>`,
    `<text x="${L - 5}" y="${height - B}" font-size="10" text-anchor="end">0</text>`,
    `<text x="${width - R}" y="${height - 8}" font-size="10" text-anchor="end">${tMax.toFixed(0)} s</text>`,
    ...lines,
    '</svg>',
  ].join('\n');
}
