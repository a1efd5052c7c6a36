// The guest's serial protocol (qemu/guest/init): lines "VUB <type> <tokens>",
// tokens either key=value or bare words. Pure parsing and typed views.

export interface VubEvent {
  /** Position in the console's event history, from 0. */
  seq: number;
  /** Host time of arrival (ms, performance.now()). */
  at: number;
  type: string;
  /** Bare words, in order (e.g. ['hold:300', 'done'] for "VUB scenario hold:300 done"). */
  args: string[];
  fields: Record<string, string>;
  /** Everything after the type, verbatim (kmsg, error texts). */
  text: string;
  raw: string;
}

const PREFIX = 'VUB ';

/** Parses one console line; undefined for anything not ours (kernel messages, noise). */
export function parseVubLine(line: string, seq = 0, at = 0): VubEvent | undefined {
  const raw = line.replace(/[\r\n]+$/, '');
  const start = raw.indexOf(PREFIX);
  // Only at the start of the line, allowing leftover control characters.
  if (start < 0 || /[^\x00-\x1f]/.test(raw.slice(0, start))) return undefined;
  const body = raw.slice(start + PREFIX.length).trim();
  const m = /^(\S+)\s*(.*)$/.exec(body);
  if (!m) return undefined;
  const [, type = '', text = ''] = m;
  const args: string[] = [];
  const fields: Record<string, string> = {};
  for (const tok of text.split(/\s+/)) {
    if (!tok) continue;
    const eq = tok.indexOf('=');
    if (eq > 0) fields[tok.slice(0, eq)] = tok.slice(eq + 1);
    else args.push(tok);
  }
  return { seq, at, type, args, fields, text, raw };
}

export interface MemInfo {
  MemTotal: number;
  MemFree: number;
  MemAvailable: number;
  AnonPages: number;
  Shmem: number;
  /** Guest uptime, seconds. */
  up: number;
}

/** kB values of a `VUB meminfo` line. */
export function memInfo(e: VubEvent): MemInfo | undefined {
  if (e.type !== 'meminfo') return undefined;
  const n = (k: string): number => Number(e.fields[k] ?? NaN);
  const mi: MemInfo = {
    MemTotal: n('MemTotal'),
    MemFree: n('MemFree'),
    MemAvailable: n('MemAvailable'),
    AnonPages: n('AnonPages'),
    Shmem: n('Shmem'),
    up: n('up'),
  };
  return Number.isFinite(mi.MemTotal) && Number.isFinite(mi.MemFree) ? mi : undefined;
}

/** Guest swap traffic since boot, pages (`VUB vmstat`, from /proc/vmstat). */
export interface GuestSwap {
  pswpin: number;
  pswpout: number;
  /** Guest uptime, seconds. */
  up: number;
}

export function guestSwap(e: VubEvent): GuestSwap | undefined {
  if (e.type !== 'vmstat') return undefined;
  const s = { pswpin: Number(e.fields.pswpin), pswpout: Number(e.fields.pswpout), up: Number(e.fields.up) };
  return Number.isFinite(s.pswpin) && Number.isFinite(s.pswpout) ? s : undefined;
}

/** Guest page cache, kB (`VUB meminfo` Buffers + Cached; lines of an older init lack them). */
export function memCacheKiB(e: VubEvent): { buffers: number; cached: number; up: number } | undefined {
  if (e.type !== 'meminfo' || e.fields.Buffers === undefined || e.fields.Cached === undefined) return undefined;
  const c = { buffers: Number(e.fields.Buffers), cached: Number(e.fields.Cached), up: Number(e.fields.up) };
  return Number.isFinite(c.buffers) && Number.isFinite(c.cached) ? c : undefined;
}

/** OOM kills in the guest since boot (`VUB vmstat oom_kill=`). */
export function guestOomKills(e: VubEvent): number | undefined {
  if (e.type !== 'vmstat' || e.fields.oom_kill === undefined) return undefined;
  const n = Number(e.fields.oom_kill);
  return Number.isInteger(n) ? n : undefined;
}

/** `VUB cache dev= kib= before= after= seconds=`: a block device read whole and held open (kB). */
export interface CacheRead { dev: string; kib: number; beforeKiB: number; afterKiB: number; seconds: number }

export function cacheRead(e: VubEvent): CacheRead | undefined {
  if (e.type !== 'cache' || e.fields.dev === undefined) return undefined;
  const f = e.fields;
  const r = { dev: f.dev ?? '', kib: Number(f.kib), beforeKiB: Number(f.before), afterKiB: Number(f.after), seconds: Number(f.seconds) };
  return [r.kib, r.beforeKiB, r.afterKiB, r.seconds].every(Number.isFinite) ? r : undefined;
}

export interface BalloonState {
  dev: string;
  driver?: string;
  /** virtio device status byte (ACKNOWLEDGE 1 | DRIVER 2 | DRIVER_OK 4 | FEATURES_OK 8). */
  status?: number;
  /** Negotiated feature bits, ascending. */
  features: number[];
  /** Pages the guest put into / took out of the balloon since boot (/proc/vmstat). */
  inflated: number;
  deflated: number;
}

/** sysfs `features` is one character per bit, bit 0 first. */
export function featureBits(s: string): number[] {
  const bits: number[] = [];
  for (let i = 0; i < s.length; i++) if (s[i] === '1') bits.push(i);
  return bits;
}

export function balloonState(e: VubEvent): BalloonState | undefined {
  if (e.type !== 'balloon' || e.fields.dev === undefined) return undefined;
  const f = e.fields;
  return {
    dev: f.dev ?? 'none',
    ...(f.driver !== undefined ? { driver: f.driver } : {}),
    ...(f.status !== undefined ? { status: Number.parseInt(f.status, 16) } : {}),
    features: featureBits(f.features ?? ''),
    inflated: Number(f.inflated ?? 0),
    deflated: Number(f.deflated ?? 0),
  };
}

/** `VUB scenario <name> done` (or start/failed). */
export function isScenario(e: VubEvent, state: 'start' | 'done' | 'failed', name?: string): boolean {
  return e.type === 'scenario' && e.args[1] === state && (name === undefined || e.args[0] === name);
}

/** One run of the guest's ebizzy-like workload (`VUB bizzy ...`, native/workload/bizzy.c). */
export interface BizzyRun {
  chunks: number;
  chunkKiB: number;
  threads: number;
  seconds: number;
  /** Chunks copied and searched (ebizzy's records). */
  records: number;
  /** records / elapsed. */
  recordsPerSecond: number;
  /** Time to allocate and fill the chunks, ms. */
  allocMs: number;
  /** Measured run time, s. */
  elapsed: number;
  /** Guest uptime at the end, s. */
  up: number;
}

export type BizzyResult = { ok: true; run: BizzyRun } | { ok: false; chunks: number; error: string };

/** A `VUB bizzy` line: a finished run, or the error that stopped it; undefined for other lines. */
export function bizzyResult(e: VubEvent): BizzyResult | undefined {
  if (e.type !== 'bizzy') return undefined;
  const f = e.fields;
  const num = (k: string): number => (f[k] === undefined || f[k] === '' ? NaN : Number(f[k]));
  const chunks = num('chunks');
  if (!Number.isInteger(chunks)) return undefined;
  if (f.error !== undefined) return { ok: false, chunks, error: f.error };
  const run: BizzyRun = {
    chunks,
    chunkKiB: num('chunk_kib'),
    threads: num('threads'),
    seconds: num('seconds'),
    records: num('records'),
    recordsPerSecond: num('rps'),
    allocMs: num('alloc_ms'),
    elapsed: num('elapsed'),
    up: num('up'),
  };
  return Object.values(run).every(Number.isFinite) ? { ok: true, run } : undefined;
}
