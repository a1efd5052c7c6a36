// Pure parts of the device-vs-stock benchmark: the results' shape, medians
// and percentiles, /proc parsing, and the side-by-side table. No I/O.
import { percentile } from '../../src/control/latency.js';

export { percentile };

export type Device = 'ours' | 'stock';

export interface InflateRun {
  run: number;
  /** Target set -> query-balloon `actual` at the target. */
  inflateSeconds: number;
  deflateSeconds: number;
  /** Allocated blocks of the guest RAM memfd (st_blocks * 512) before the inflate and once settled after it. */
  memfdBeforeBytes: number;
  memfdAfterBytes: number;
  freedBytes: number;
  /** QEMU's RssShmem before and after, for comparison with the e2e test. */
  rssShmemBeforeKiB: number;
  rssShmemAfterKiB: number;
}

export interface LatencyFigures {
  /** What was timed, in words. */
  what: string;
  samples: number;
  p50Seconds: number;
  p99Seconds: number;
}

export interface PressureFigures {
  /** From the daemon's Summary (prom-client's estimate over every event). */
  samples: number;
  p50Seconds: number;
  p90Seconds: number;
  p99Seconds: number;
  sumSeconds: number;
  /** The same from status (exact, last 1024 events). */
  status: { count: number; p50Seconds: number | null; p99Seconds: number | null };
  /** Kernel events the daemon counted (most hit the hold or the ceiling and changed nothing). */
  hostEvents: number;
  rounds: number;
  seconds: number;
}

export interface ProcFigures {
  vmRssKiB: number;
  rssAnonKiB: number;
  rssFileKiB: number;
  rssShmemKiB: number;
  /** utime + stime over the idle window (whole clock ticks). */
  cpuSeconds: number;
  /** Time on CPU of all threads over the window (schedstat, ns resolution). */
  onCpuSeconds: number;
  /** onCpuSeconds / window, as % of one core. */
  cpuPercent: number;
}

export interface DeviceResult {
  device: Device;
  runs: InflateRun[];
  targetChange: LatencyFigures;
  /** null for stock: QEMU's device has no host pressure source. */
  pressure: PressureFigures | null;
  idle: { seconds: number; daemon: ProcFigures | null; qemu: ProcFigures };
}

export const median = (xs: number[]): number => {
  if (xs.length === 0) return Number.NaN;
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
};

/** utime + stime (clock ticks) of a /proc/PID/stat line (fields 14 and 15; comm may hold spaces and parens). */
export function procCpuTicks(stat: string): number {
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // rest[0] is field 3 (state): field n is rest[n - 3].
  const utime = Number(rest[11]);
  const stime = Number(rest[12]);
  if (!Number.isFinite(utime) || !Number.isFinite(stime)) throw new Error(`not a /proc/PID/stat line: ${stat.slice(0, 80)}`);
  return utime + stime;
}

const MiB = 2 ** 20;
const fixed = (x: number, digits: number) => (Number.isFinite(x) ? x.toFixed(digits) : '-');
const secs = (s: number) => `${fixed(s, 2)} s`;
/** Milliseconds with about three significant digits. */
const ms = (s: number) => fixed(s * 1000, s < 0.001 ? 3 : s < 0.01 ? 2 : 1);
const mib = (bytes: number) => `${fixed(bytes / MiB, 0)} MiB`;
const kibAsMib = (kib: number) => fixed(kib / 1024, 1);

function runsCell(values: number[], fmt: (x: number) => string, unit: string): string {
  return `${values.map(fmt).join(' / ')} ${unit}`;
}

function latencyCell(l: LatencyFigures | null): string {
  return l ? `${ms(l.p50Seconds)} / ${ms(l.p99Seconds)} ms (n=${l.samples})` : '-';
}

function procCells(p: ProcFigures | null, none: string): [string, string] {
  if (!p) return [none, none];
  return [
    `${kibAsMib(p.vmRssKiB)} MiB (anon ${kibAsMib(p.rssAnonKiB)}, file ${kibAsMib(p.rssFileKiB)}, shmem ${kibAsMib(p.rssShmemKiB)})`,
    `${fixed(p.cpuPercent, 2)} % of a core (${fixed(p.onCpuSeconds * 1000, 1)} ms on CPU; utime+stime ${fixed(p.cpuSeconds * 1000, 0)} ms)`,
  ];
}

export interface TableInput {
  guestMiB: number;
  balloonMiB: number;
  runs: number;
  idleSeconds: number;
  /** The daemon's nice value, when not 0. */
  daemonNice?: number;
  daemonFifo?: number;
  ours: DeviceResult | null;
  stock: DeviceResult | null;
}

/** The side-by-side table and the line that says what the latencies measure. */
export function renderTable(t: TableInput): string {
  const NO_DEVICE = 'not run';
  const col = (d: DeviceResult | null, cell: (d: DeviceResult) => string) => (d ? cell(d) : NO_DEVICE);
  const rows: Array<[string, string, string]> = [];
  const both = (label: string, cell: (d: DeviceResult) => string) => rows.push([label, col(t.ours, cell), col(t.stock, cell)]);
  const field = (d: DeviceResult, f: (r: InflateRun) => number) => d.runs.map(f);

  both(`inflate ${t.balloonMiB} MiB (median of ${t.runs})`, (d) => secs(median(field(d, (r) => r.inflateSeconds))));
  both('  each run', (d) => runsCell(field(d, (r) => r.inflateSeconds), (x) => fixed(x, 2), 's'));
  both(`deflate ${t.balloonMiB} MiB (median of ${t.runs})`, (d) => secs(median(field(d, (r) => r.deflateSeconds))));
  both('  each run', (d) => runsCell(field(d, (r) => r.deflateSeconds), (x) => fixed(x, 2), 's'));
  both('host memory freed by the inflate (median)', (d) => mib(median(field(d, (r) => r.freedBytes))));
  both('  each run (guest RAM memfd blocks)', (d) => runsCell(field(d, (r) => r.freedBytes / MiB), (x) => fixed(x, 0), 'MiB'));
  both(`host pressure -> CONFIG_CHANGE p50 / p99${t.daemonNice ? ` (daemon nice ${t.daemonNice})` : ''}${t.daemonFifo ? ` (daemon SCHED_FIFO ${t.daemonFifo})` : ''}`, (d) => (d.pressure
    ? `${ms(d.pressure.p50Seconds)} / ${ms(d.pressure.p99Seconds)} ms (n=${d.pressure.samples})`
    : 'n/a (no pressure source)'));
  both('operator target change round trip p50 / p99', (d) => latencyCell(d.targetChange));
  both('  via', (d) => (d.device === 'ours' ? 'control socket set-target' : 'QMP balloon'));
  const daemon = (d: DeviceResult) => procCells(d.idle.daemon, 'n/a (no extra process)');
  both('daemon RSS (VmRSS)', (d) => daemon(d)[0]);
  both(`daemon CPU, guest idle ${t.idleSeconds} s`, (d) => daemon(d)[1]);
  const qemu = (d: DeviceResult) => procCells(d.idle.qemu, '-');
  both('QEMU RSS, for context', (d) => qemu(d)[0]);
  both(`QEMU CPU, guest idle ${t.idleSeconds} s, for context`, (d) => qemu(d)[1]);

  const head: [string, string, string] = [`device benchmark, ${t.guestMiB / 1024} GiB TCG guest, ${t.balloonMiB} MiB`, 'ours (vhost-user)', 'stock virtio-balloon-pci'];
  const w0 = Math.max(...[head, ...rows].map((r) => r[0].length)) + 2;
  const w1 = Math.max(...[head, ...rows].map((r) => r[1].length)) + 2;
  const line = (r: [string, string, string]) => `${r[0].padEnd(w0)}${r[1].padEnd(w1)}${r[2]}`.trimEnd();
  return [line(head), ...rows.map(line), NOTE].join('\n');
}

export const NOTE = 'measured: inflate/deflate = target set until query-balloon `actual` equals it (polled every 20 ms); '
  + 'freed = drop of the guest RAM memfd\'s allocated blocks once settled; '
  + 'pressure -> CONFIG_CHANGE = inside the daemon only, from its first JS line on the eventfd wake-up to the CONFIG_CHANGE_MSG send returning '
  + '(not the kernel wake-up, QEMU or the guest); round trip = client request to reply: ours until the daemon has sent CONFIG_CHANGE_MSG to QEMU, '
  + 'stock until QEMU has set num_pages and raised the config interrupt.';
