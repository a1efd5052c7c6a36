// Reading a memory cgroup for the host-wide policy: how much it may use,
// how much it uses, and (where the kernel has it) how much its tasks stall
// on memory. The parsing is pure and tested on strings; the reads are small
// files (a few hundred bytes, memory.stat ~1 KiB), so a sample costs tens of
// microseconds.
//
// - cgroup v1: memory.usage_in_bytes against memory.limit_in_bytes;
// - cgroup v2: memory.current against memory.high, or memory.max when high
//   is "max";
// - system-wide (PSI on /proc/pressure/memory, or a cgroup2 group without
//   the memory controller, as on hybrid hosts): MemTotal - MemAvailable
//   against MemTotal.
// An unlimited group is limited by the host's RAM (MemTotal).
//
// Usage counts the group's inactive file cache as free: the kernel drops it
// first and at little cost, and a balloon should not be inflated to make
// room for cache nobody reads (cAdvisor's "working set" is the same
// figure). Guest RAM is shared memory (shmem), which sits on the anon LRU,
// so it is never subtracted.
import { existsSync, readFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import type { PressureConfig } from '../pressure/detect.js';
import { SYSTEM_PSI, type Plan } from '../pressure/detect.js';

/** What one VM's host memory is: the group the policy samples and splits. */
export type MemcgScope =
  | { kind: 'v1'; dir: string }
  | { kind: 'v2'; dir: string }
  | { kind: 'system' };

export const scopeKey = (s: MemcgScope): string => (s.kind === 'system' ? 'system' : `${s.kind} ${s.dir}`);
export const scopeText = (s: MemcgScope): string => (s.kind === 'system' ? 'host memory (/proc/meminfo)' : `memcg ${s.dir}`);

/** The scope of a VM from its pressure plan; `--pressure none --memcg DIR` still samples DIR. */
export function scopeOf(plan: Plan, cfg: PressureConfig, exists: (p: string) => boolean = existsSync): MemcgScope | null {
  switch (plan.kind) {
    case 'vmpressure':
      return { kind: 'v1', dir: plan.memcg };
    case 'psi':
      return plan.file === SYSTEM_PSI || basename(plan.file) !== 'memory.pressure' ? { kind: 'system' } : { kind: 'v2', dir: dirname(plan.file) };
    case 'none':
      if (!cfg.memcg) return null;
      if (exists(join(cfg.memcg, 'memory.usage_in_bytes'))) return { kind: 'v1', dir: cfg.memcg };
      if (exists(join(cfg.memcg, 'memory.pressure')) || exists(join(cfg.memcg, 'memory.current'))) return { kind: 'v2', dir: cfg.memcg };
      return null;
  }
}

export interface MemcgReading {
  limitBytes: number;
  /** Usage less inactive file cache. */
  usageBytes: number;
  /** Raw usage, for the record. */
  rawUsageBytes: number;
  /** PSI "some avg10" (%), or null where the group has none. */
  psiSomeAvg10: number | null;
  /** Which files were read, in words ("memory.current / memory.max"). */
  source: string;
}

/** A number from a cgroup file; "max" (v2: no limit) is Infinity. */
export function parseCgroupNumber(text: string): number {
  const t = text.trim();
  if (t === 'max') return Number.POSITIVE_INFINITY;
  const n = Number(t);
  if (!Number.isFinite(n) || n < 0) throw new Error(`not a cgroup number: ${JSON.stringify(t.slice(0, 40))}`);
  // v1 writes "no limit" as PAGE_COUNTER_MAX pages (9223372036854771712).
  return n >= 2 ** 62 ? Number.POSITIVE_INFINITY : n;
}

/** One key of memory.stat ("total_inactive_file 123"), or 0. */
export function statField(text: string, key: string): number {
  const m = new RegExp(`^${key} (\\d+)$`, 'm').exec(text);
  return m ? Number(m[1]) : 0;
}

/** "some avg10=1.23 avg60=..." -> 1.23, or null. */
export function parsePsiSomeAvg10(text: string): number | null {
  const m = /^some avg10=(\d+(?:\.\d+)?)/m.exec(text);
  return m ? Number(m[1]) : null;
}

/** MemTotal and MemAvailable of /proc/meminfo, in bytes. */
export function parseMeminfo(text: string): { totalBytes: number; availableBytes: number } {
  const kib = (k: string) => {
    const m = new RegExp(`^${k}:\\s+(\\d+) kB$`, 'm').exec(text);
    if (!m) throw new Error(`/proc/meminfo has no ${k}`);
    return Number(m[1]) * 1024;
  };
  return { totalBytes: kib('MemTotal'), availableBytes: kib('MemAvailable') };
}

export type ReadFile = (path: string) => string;
const readText: ReadFile = (p) => readFileSync(p, 'utf8');

function maybe(read: ReadFile, path: string): string | null {
  try {
    return read(path);
  } catch {
    return null;
  }
}

/** Read the scope now. Throws (with the path) when the group is gone or unreadable. */
export function readScope(scope: MemcgScope, read: ReadFile = readText): MemcgReading {
  const meminfo = parseMeminfo(read('/proc/meminfo'));
  const system = (source: string, psi: number | null): MemcgReading => ({
    limitBytes: meminfo.totalBytes, usageBytes: meminfo.totalBytes - meminfo.availableBytes,
    rawUsageBytes: meminfo.totalBytes - meminfo.availableBytes, psiSomeAvg10: psi, source,
  });
  if (scope.kind === 'system') {
    const psi = maybe(read, SYSTEM_PSI);
    return system('/proc/meminfo MemTotal - MemAvailable', psi === null ? null : parsePsiSomeAvg10(psi));
  }
  const f = (name: string) => join(scope.dir, name);
  if (scope.kind === 'v1') {
    const raw = parseCgroupNumber(read(f('memory.usage_in_bytes')));
    const limit = Math.min(parseCgroupNumber(read(f('memory.limit_in_bytes'))), meminfo.totalBytes);
    const inactive = statField(maybe(read, f('memory.stat')) ?? '', 'total_inactive_file');
    return { limitBytes: limit, usageBytes: Math.max(0, raw - inactive), rawUsageBytes: raw, psiSomeAvg10: null, source: 'memory.usage_in_bytes / memory.limit_in_bytes' };
  }
  const pressure = maybe(read, f('memory.pressure'));
  const psi = pressure === null ? null : parsePsiSomeAvg10(pressure);
  const current = maybe(read, f('memory.current'));
  // A cgroup2 group without the memory controller (hybrid hosts keep it on
  // v1): PSI is the group's, memory is the host's.
  if (current === null) return system('/proc/meminfo (the group has no memory.current)', psi);
  const raw = parseCgroupNumber(current);
  const high = parseCgroupNumber(maybe(read, f('memory.high')) ?? 'max');
  const max = parseCgroupNumber(maybe(read, f('memory.max')) ?? 'max');
  const limit = Math.min(Number.isFinite(high) ? high : max, meminfo.totalBytes);
  const inactive = statField(maybe(read, f('memory.stat')) ?? '', 'inactive_file');
  return {
    limitBytes: limit, usageBytes: Math.max(0, raw - inactive), rawUsageBytes: raw, psiSomeAvg10: psi,
    source: `memory.current / ${Number.isFinite(high) ? 'memory.high' : 'memory.max'}`,
  };
}
