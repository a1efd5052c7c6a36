// The host-wide policy for the VMs of one memory cgroup, as pure functions:
// how much memory must come back to keep a headroom (need), how much each
// VM can give at least cost (spare), and who gives what (split). No I/O;
// times are the caller's monotonic milliseconds.
//
// Need: the cgroup's headroom below its limit against a target, looking
// ahead by its growth over the time a balloon takes to move. Spare: a
// guest's MemAvailable above its reserve, in two tiers: reclaimable page
// cache first (ChromeOS concierge's rule: never push a guest into anonymous
// reclaim while another has cache to give), then free memory. Split: the need
// goes to the cache tier, then the free tier, each divided in proportion to
// weight x spare and capped at what each VM can spare. docs/policy.md gives
// the defaults and why.

import type { CyclePeak } from './reuse.js';
import { findMove, type Move } from './rebalance.js';
import { waterFill } from './water-fill.js';

export interface HostParams {
  /** Target headroom below the limit: the larger of this share of the limit ... */
  headroomPercent: number;
  /** ... and this many bytes. */
  headroomBytes: number;
  /** Look this far ahead at the cgroup's growth. */
  horizonMs: number;
  /** Growth is measured against a sample at least this old (events can come ms apart: noise). */
  growthWindowMs: number;
  /** A guest keeps at least this share of its RAM available (or its own --reserve, if larger). */
  guestReservePercent: number;
  /** Page cache a guest keeps whatever the need, as a share of its RAM. */
  guestCacheKeepPercent: number;
  /** A guest using up its memory keeps what it would use in this long at its current rate: free memory it is about to use is not spare. */
  guestHorizonMs: number;
  /** A guest whose use fell and rose again by guestCycleBytes within this window keeps its peak of the window (reuse.ts); 0 (the default): off. Measured: it ends guest swap in rounds but moves swap to the host (docs/policy-bench/2026-12-01-rounds). */
  guestCycleWindowMs: number;
  /** ... the fall and the rise that make a cycle. */
  guestCycleBytes: number;
  /** ... and which peak it keeps: the window's highest use, or its last round's peak (reuse.ts). */
  guestCyclePeak: CyclePeak;
  /** A fall of a guest's use by guestCycleBytes or more between two stats samples is not spare until a sample this long after it (fresh-free.ts); 0: off. Until then it is an emergency tier (withFreshTier). */
  guestFreshFreeMs: number;
  /** Once the need is met, units move from the VM furthest ahead of its weighted share to the one furthest behind when that brings both closer, after the imbalance has lasted this long (rebalance.ts); 0: never. */
  rebalanceAfterMs: number;
  /** PSI "some avg10" at or above this (%): the group stalls on memory, whatever its usage says ... */
  stallPercent: number;
  /** ... and then needs at least this much back (and gets nothing given back). */
  stallNeedBytes: number;
}

export const DEFAULT_HOST_PARAMS: Readonly<HostParams> = Object.freeze({
  headroomPercent: 10,
  headroomBytes: 128 * 2 ** 20,
  horizonMs: 2000,
  growthWindowMs: 1000,
  guestReservePercent: 10,
  guestCacheKeepPercent: 5,
  guestHorizonMs: 10_000,
  guestCycleWindowMs: 0,
  guestCycleBytes: 64 * 2 ** 20,
  guestCyclePeak: 'window',
  guestFreshFreeMs: 2000,
  rebalanceAfterMs: 10_000,
  stallPercent: 10,
  stallNeedBytes: 32 * 2 ** 20,
});

export interface CgroupSample {
  limitBytes: number;
  usageBytes: number;
  /** Monotonic ms. */
  at: number;
  /** PSI some avg10 (%) of the group, where the kernel has it. */
  psiSomeAvg10?: number | null;
  /** The decision was woken by a pressure event: the kernel already reclaims in the group (absent: no). */
  reclaiming?: boolean;
}

export interface Need {
  /** Bytes that must come back now (0: the headroom holds). */
  needBytes: number;
  headroomBytes: number;
  /** limit - usage now. */
  freeBytes: number;
  /** Bytes per second (growthOf: 0 without an old enough sample, or when shrinking). */
  growthBps: number;
  /** The group stalls on memory (PSI at or above stallPercent). */
  stalling: boolean;
}

export function headroomOf(p: HostParams, limitBytes: number): number {
  return Math.max(p.headroomBytes, Math.floor((limitBytes * p.headroomPercent) / 100));
}

/**
 * Growth of the group in bytes/s: usage now against the newest sample at
 * least `growthWindowMs` old. Without one (events come ms apart, right after
 * a sample), the last estimate stands: a rate over a few ms is noise (seen:
 * 418 MiB/s on a vmpressure burst while 1 s samples read 90).
 */
export function growthOf(p: HostParams, history: readonly CgroupSample[], cur: CgroupSample, lastBps: number): number {
  for (let i = history.length - 1; i >= 0; i--) {
    const h = history[i]!;
    const dt = cur.at - h.at;
    if (dt >= p.growthWindowMs) return Math.max(0, ((cur.usageBytes - h.usageBytes) * 1000) / dt);
  }
  return history.length > 0 ? lastBps : 0;
}

/** How much must come back: headroom - free + growth (growthOf) over the horizon, never below 0. */
export function computeNeed(p: HostParams, cur: CgroupSample, growthBps: number): Need {
  const headroomBytes = headroomOf(p, cur.limitBytes);
  const freeBytes = Math.max(0, cur.limitBytes - cur.usageBytes);
  const ahead = (growthBps * p.horizonMs) / 1000;
  const stalling = cur.psiSomeAvg10 != null && p.stallPercent > 0 && cur.psiSomeAvg10 >= p.stallPercent;
  const byUsage = Math.max(0, Math.ceil(headroomBytes - freeBytes + ahead));
  return { needBytes: stalling ? Math.max(byUsage, p.stallNeedBytes) : byUsage, headroomBytes, freeBytes, growthBps, stalling };
}

/** Samples kept for the growth: every one from the newest at least a window old on, one per quarter window. */
export function keepSamples(p: HostParams, history: readonly CgroupSample[], cur: CgroupSample): CgroupSample[] {
  const last = history[history.length - 1];
  const kept = last && cur.at - last.at < p.growthWindowMs / 4 ? history.slice() : [...history, cur];
  let from = 0;
  for (let i = kept.length - 1; i >= 0; i--) {
    if (cur.at - kept[i]!.at >= p.growthWindowMs) { from = i; break; }
  }
  return kept.slice(from);
}

/** What the policy knows of one VM. */
export interface VmView {
  vm: string;
  weight: number;
  ramBytes: number;
  balloonBytes: number;
  /** Largest balloon the VM's floor and --max-balloon allow. */
  ceilingBytes: number;
  /** The VM's own reserve (0: only the default share of its RAM). */
  reserveBytes: number;
  /** Latest guest stats (bytes); null when none came. */
  stats: { availableBytes?: number; cachesBytes?: number } | null;
  /** Stats older than the policy trusts (or none): at most one step. */
  stale: boolean;
  /** How fast the guest itself uses up MemAvailable (bytes/s; absent or 0: not at all). */
  useBps?: number;
  /** What it used in its recent rounds beyond its use now (reuse.ts; absent or 0: no rounds seen). */
  reuseBytes?: number;
  /** What it freed so recently that it is not spare yet (fresh-free.ts; absent or 0: none, or the rule is off). */
  freshFreeBytes?: number;
  /**
   * Guest RAM neither ballooned (nor asked to be) nor backed on the host:
   * free memory the guest never touched, or got back from the balloon and
   * has not used since. Ballooning it frees nothing (absent: not known).
   */
  unbackedFreeBytes?: number;
  /** Of that, what the balloon gave back and the guest has not used since (returned.ts): part of what it could hold (absent: 0). */
  returnedBytes?: number;
}

export interface Spare {
  vm: string;
  /** Reclaimable page cache it can give (first tier). */
  cacheBytes: number;
  /** Free memory it can give (second tier). */
  freeBytes: number;
  /**
   * Unbacked free memory, which frees nothing when ballooned: not spare. The
   * balloon takes it after the backed free memory and before any cache, so
   * a share beyond `freeBytes` is asked for it on top (absent: 0).
   */
  overheadBytes?: number;
  reserveBytes: number;
  stale: boolean;
}

/** A guest's reserve: its own --reserve, or the default share of its RAM, whichever is larger. */
export const reserveOf = (ramBytes: number, ownReserveBytes: number, percent = DEFAULT_HOST_PARAMS.guestReservePercent): number =>
  Math.max(ownReserveBytes, Math.floor((ramBytes * percent) / 100));

/** What a VM can give: MemAvailable above its reserve, split into cache and free; bounded by its ceiling. */
export function spareOf(p: HostParams, v: VmView): Spare {
  const reserveBytes = reserveOf(v.ramBytes, v.reserveBytes, p.guestReservePercent);
  const room = Math.max(0, v.ceilingBytes - v.balloonBytes);
  const available = v.stats?.availableBytes;
  // Nothing known: it may still be asked for one step (the split caps stale VMs).
  if (available === undefined) return { vm: v.vm, cacheBytes: 0, freeBytes: room, overheadBytes: 0, reserveBytes, stale: true };
  const aboutToUse = Math.max(Math.ceil(((v.useBps ?? 0) * p.guestHorizonMs) / 1000), v.reuseBytes ?? 0, v.freshFreeBytes ?? 0);
  const total = Math.min(room, Math.max(0, available - reserveBytes - aboutToUse));
  // What the host gets back: the guest fills its balloon from free pages first, and the unbacked ones free nothing.
  const overheadBytes = Math.min(total, v.unbackedFreeBytes ?? 0);
  const usable = total - overheadBytes;
  const keepCache = Math.floor((v.ramBytes * p.guestCacheKeepPercent) / 100);
  const cacheBytes = Math.min(usable, Math.max(0, (v.stats?.cachesBytes ?? 0) - keepCache));
  return { vm: v.vm, cacheBytes, freeBytes: usable - cacheBytes, overheadBytes, reserveBytes, stale: v.stale };
}

/**
 * waterFill on top of what each item gave already (`given`): the totals,
 * given + share, follow weight x (given + spare), so that many small
 * decisions add up to the split one large one would make, and an item that
 * gave early waits until the others caught up. What the totals leave over
 * (all are at their split) goes by plain waterFill.
 */
export function fairFill(need: number, items: ReadonlyArray<{ key: string; weight: number; spare: number; given: number }>): Map<string, number> {
  const givenSum = items.reduce((n, i) => n + Math.max(0, i.given), 0);
  if (givenSum <= 0) return waterFill(need, items);
  const total = waterFill(need + givenSum, items.map((i) => ({ key: i.key, weight: i.weight, spare: Math.max(0, i.given) + i.spare })));
  const behind = items.map((i) => ({ key: i.key, spare: Math.max(0, Math.min(i.spare, total.get(i.key)! - Math.max(0, i.given))) }));
  const behindSum = behind.reduce((n, b) => n + b.spare, 0);
  const out = new Map<string, number>();
  // More behind than the need: each catches up in proportion to how far behind it is.
  for (const b of behind) out.set(b.key, behindSum > need ? (b.spare * need) / behindSum : b.spare);
  const left = need - Math.min(need, behindSum);
  if (left > 0.5) {
    const more = waterFill(left, items.map((i) => ({ key: i.key, weight: i.weight, spare: i.spare - out.get(i.key)! })));
    for (const [k, v] of more) out.set(k, out.get(k)! + v);
  }
  for (const [k, v] of out) out.set(k, Math.floor(v));
  return out;
}

export interface Share {
  vm: string;
  /** Bytes the VM's balloon grows by. */
  bytes: number;
  fromCache: number;
  fromFree: number;
  /** Of `bytes`, unbacked free memory the balloon takes on the way (frees nothing; absent: 0). */
  overheadBytes?: number;
  /** Of `bytes`, memory the guest has just freed (fresh-free.ts), taken because the rest did not cover the need (absent: 0). */
  fromFreshBytes?: number;
}

/**
 * Who gives what for `need`: the cache tier first, then free memory; a VM
 * whose stats are stale gives at most `staleStepBytes`. `given`: what each
 * VM's balloon holds or was asked for already, so that the weights hold for
 * the totals (fairFill), not for each decision's part.
 */
export function splitNeed(need: number, spares: readonly Spare[], weights: ReadonlyMap<string, number>, staleStepBytes: number,
  given: ReadonlyMap<string, number> = new Map()): Share[] {
  const cap = (s: Spare, bytes: number) => (s.stale ? Math.min(bytes, staleStepBytes) : bytes);
  const w = (vm: string) => weights.get(vm) ?? 1;
  const g = (vm: string) => given.get(vm) ?? 0;
  const cacheShare = fairFill(need, spares.map((s) => ({ key: s.vm, weight: w(s.vm), spare: cap(s, s.cacheBytes), given: g(s.vm) })));
  const fromCache = [...cacheShare.values()].reduce((a, b) => a + b, 0);
  const freeShare = fairFill(Math.max(0, need - fromCache), spares.map((s) => ({
    key: s.vm, weight: w(s.vm), spare: cap(s, s.cacheBytes + s.freeBytes) - cacheShare.get(s.vm)!, given: g(s.vm) + cacheShare.get(s.vm)!,
  })));
  return spares.map((s) => {
    const c = cacheShare.get(s.vm) ?? 0;
    const f = freeShare.get(s.vm) ?? 0;
    // The guest fills its balloon from the free pages the host backs first
    // (freed last: the head of its free lists), then from those it never
    // touched or reported (the tail), and only then reclaims cache. A share
    // within its backed free memory costs nothing extra; one beyond it
    // takes all the unbacked pages on the way, asked on top.
    const over = c + f > s.freeBytes ? s.overheadBytes ?? 0 : 0;
    return { vm: s.vm, bytes: c + f + over, fromCache: c, fromFree: f, overheadBytes: over };
  });
}

export interface GiveBackParams {
  /** Balloons shrink once the cgroup has had this many times its headroom free ... */
  roomFactor: number;
  /** ... for this long. */
  afterMs: number;
  /** At most this much comes back per step, all VMs together. */
  stepBytes: number;
}

export const DEFAULT_GIVE_BACK: Readonly<GiveBackParams> = Object.freeze({ roomFactor: 2, afterMs: 30_000, stepBytes: 64 * 2 ** 20 });

/** What the host step sees of a VM beyond its spare: its target, and whether it may be asked. */
export interface GroupVm extends VmView {
  targetBytes: number;
  /** Manual hold, auto off, or guest pressure (hysteresis): its target is not the host's to move. */
  excluded: boolean;
  /** When its latest stats were sampled (monotonic ms; absent: not known, taken as fresh). */
  statsAtMs?: number;
}

export interface GroupState {
  /** Recent samples, oldest first, for the growth (keepSamples). */
  history: CgroupSample[];
  /** The last growth estimate (bytes/s). */
  growthBps: number;
  /** Since when the cgroup has had room to give back (null: not now). */
  roomSince: number | null;
  /** Since when a rebalance move would pay (null: not now). */
  imbalanceSince: number | null;
  /** When the last rebalance moved memory: the next one waits for stats sampled after it. */
  rebalancedAt: number | null;
}

export const initialGroupState = (): GroupState => ({ history: [], growthBps: 0, roomSince: null, imbalanceSince: null, rebalancedAt: null });

export interface GroupDecision {
  need: Need;
  /** Inflation already asked for and not done yet, counted against the need. */
  outstandingBytes: number;
  spares: Spare[];
  shares: Share[];
  /** New targets by VM (only those that change). */
  targets: Map<string, number>;
  /** Set when the targets are a rebalance between two VMs, not an ask or a give-back. */
  move?: Move;
  reason: string;
}

/**
 * Shares in whole units (the VM's step), so that the guest is asked in the
 * unit it is told. Largest remainder: each VM gets the whole units of its
 * exact share, then units go to the largest remainders while more than half
 * a unit of the total is left: the total is rounded to the nearest unit, so
 * a 2 MiB remainder does not cost a 32 MiB step, and what is left over is
 * asked for once it adds up to more than half a step. Never beyond the
 * whole units a VM can spare (a stale VM: one step). A VM rounded up is
 * ahead by that much at the next decision, which fairFill (the split over
 * totals) takes into account.
 */
export function inUnits(shares: readonly Share[], spares: readonly Spare[], staleStepBytes: number, unitBytes: (vm: string) => number): Share[] {
  const rows = shares.map((sh) => {
    const sp = spares.find((x) => x.vm === sh.vm);
    const unit = Math.max(1, unitBytes(sh.vm));
    const spare = sp ? (sp.stale ? Math.min(sp.cacheBytes + sp.freeBytes, staleStepBytes) : sp.cacheBytes + sp.freeBytes + (sp.overheadBytes ?? 0)) : sh.bytes;
    const maxUnits = Math.floor(spare / unit);
    return { sh, unit, maxUnits, units: Math.min(maxUnits, Math.max(0, Math.floor(sh.bytes / unit))) };
  });
  const wanted = shares.reduce((n, s) => n + s.bytes, 0);
  let left = wanted - rows.reduce((n, r) => n + r.units * r.unit, 0);
  while (left > 0) {
    let best: (typeof rows)[number] | null = null;
    for (const r of rows) {
      if (r.sh.bytes <= 0 || r.units >= r.maxUnits) continue;
      if (!best || r.sh.bytes - r.units * r.unit > best.sh.bytes - best.units * best.unit) best = r;
    }
    if (!best) break;
    if (left <= best.unit / 2) break;
    best.units++;
    left -= best.unit;
  }
  return rows.map((r) => {
    const bytes = r.units * r.unit;
    const fromCache = Math.min(r.sh.fromCache, bytes);
    const overheadBytes = Math.min(r.sh.overheadBytes ?? 0, bytes - fromCache);
    return { ...r.sh, bytes, fromCache, fromFree: bytes - fromCache - overheadBytes, overheadBytes };
  });
}

/**
 * One look at the cgroup: ask the VMs for what the need is not already
 * covered by inflations under way, or, after `give.afterMs` with plenty of
 * room, give some back, most to the VMs that gave most for their weight.
 */
export function groupStep(p: HostParams, give: GiveBackParams, state: GroupState, cur: CgroupSample, vms: readonly GroupVm[], staleStepBytes: number,
  unitBytes?: (vm: string) => number): { state: GroupState; decision: GroupDecision } {
  const growthBps = growthOf(p, state.history, cur, state.growthBps);
  const need = computeNeed(p, cur, growthBps);
  const managed = vms.filter((v) => !v.excluded);
  const outstandingBytes = managed.reduce((n, v) => n + Math.max(0, v.targetBytes - v.balloonBytes), 0);
  const spares = managed.map((v) => spareOf(p, v));
  const weights = new Map(managed.map((v) => [v.vm, v.weight]));
  const targets = new Map<string, number>();
  let shares: Share[] = [];
  let reason: string;
  let roomSince = state.roomSince;
  const toAsk = need.needBytes - outstandingBytes;
  if (toAsk > 0) {
    roomSince = null;
    const gaveBytes = new Map(managed.map((v) => [v.vm, heldOf(v)]));
    shares = splitNeed(toAsk, spares, weights, staleStepBytes, gaveBytes);
    if (unitBytes) shares = inUnits(shares, spares, staleStepBytes, unitBytes);
    // Memory just freed is the emergency tier: only when the host is about to reclaim guest memory.
    if (need.freeBytes < staleStepBytes || need.stalling || cur.reclaiming) {
      shares = withFreshTier(p, managed, spares, shares, toAsk, weights, staleStepBytes, gaveBytes, unitBytes);
    }
    for (const s of shares) {
      if (s.bytes <= 0) continue;
      const v = managed.find((m) => m.vm === s.vm)!;
      targets.set(s.vm, heldOf(v) + s.bytes);
    }
    const given = freedBy(shares);
    const over = shares.reduce((n, s) => n + (s.overheadBytes ?? 0), 0);
    const fresh = shares.reduce((n, s) => n + (s.fromFreshBytes ?? 0), 0);
    reason = `need ${mb(need.needBytes)} (headroom ${mb(need.headroomBytes)}, free ${mb(need.freeBytes)}, growth ${mb(need.growthBps)}/s${need.stalling ? `, PSI some avg10 ${cur.psiSomeAvg10}%` : ''})`
      + `${outstandingBytes ? `, ${mb(outstandingBytes)} already on the way` : ''}: asked ${mb(given)}${over ? ` (+${mb(over)} of free memory the host never backed, taken on the way)` : ''}`
      + `${fresh ? ` (of it ${mb(fresh)} just freed: the rest did not cover the need)` : ''}`
      + `${given < toAsk ? `, ${mb(toAsk - given)} more than the guests can spare` : ''}`;
  } else if (!need.stalling && need.freeBytes >= give.roomFactor * need.headroomBytes) {
    roomSince ??= cur.at;
    const room = need.freeBytes - 1.5 * need.headroomBytes;
    const holders = managed.filter((v) => v.balloonBytes > 0);
    if (cur.at - roomSince >= give.afterMs && holders.length > 0 && room > 0) {
      const back = waterFill(Math.min(give.stepBytes, room), holders.map((v) => ({ key: v.vm, weight: 1 / Math.max(v.weight, 1e-9), spare: v.balloonBytes })));
      for (const v of holders) {
        const b = back.get(v.vm) ?? 0;
        if (b > 0) targets.set(v.vm, Math.max(0, Math.min(v.targetBytes, v.balloonBytes) - b));
      }
      reason = `room: ${mb(need.freeBytes)} free for ${Math.round((cur.at - roomSince) / 1000)} s, ${give.roomFactor}x the headroom: giving back up to ${mb(Math.min(give.stepBytes, room))}`;
    } else {
      reason = `room: ${mb(need.freeBytes)} free (headroom ${mb(need.headroomBytes)})${holders.length ? `, giving back after ${Math.round(give.afterMs / 1000)} s of it` : ''}`;
    }
  } else {
    roomSince = null;
    reason = `headroom holds: ${mb(need.freeBytes)} free of ${mb(need.headroomBytes)} wanted${outstandingBytes ? `, ${mb(outstandingBytes)} on the way` : ''}`;
  }
  let imbalanceSince = state.imbalanceSince;
  let rebalancedAt = state.rebalancedAt;
  let move: Move | undefined;
  if (toAsk <= 0 && targets.size === 0 && outstandingBytes === 0 && !need.stalling && unitBytes && p.rebalanceAfterMs > 0) {
    const found = rebalanceMove(managed, spares, unitBytes, give.stepBytes);
    if (!found) imbalanceSince = null;
    else {
      imbalanceSince ??= cur.at;
      // Stats sampled before the last move do not show it yet: wait for newer ones.
      const fresh = managed.every((v) => v.stale || rebalancedAt === null || v.statsAtMs === undefined || v.statsAtMs > rebalancedAt);
      if (fresh && cur.at - imbalanceSince >= p.rebalanceAfterMs) {
        const held = (vm: string) => heldOf(managed.find((m) => m.vm === vm)!);
        targets.set(found.to, held(found.to) + found.bytes);
        targets.set(found.from, Math.max(0, held(found.from) - found.bytes));
        move = found;
        rebalancedAt = cur.at;
        reason += `; rebalance: ${found.from} holds ${mb(held(found.from))} for a weighted share of ${mb(found.fromShareBytes)}, ${found.to} ${mb(held(found.to))} for ${mb(found.toShareBytes)}`
          + ` (for ${Math.round((cur.at - imbalanceSince) / 1000)} s): ${mb(found.bytes)} moves from ${found.from} to ${found.to}`;
      }
    }
  }
  const history = keepSamples(p, state.history, cur);
  return { state: { history, growthBps, roomSince, imbalanceSince, rebalancedAt }, decision: { need, outstandingBytes, spares, shares, targets, ...(move ? { move } : {}), reason } };
}

/**
 * Memory a guest has just freed is the last tier: not spare while the
 * others' cache and settled free memory cover the need, and taken for what
 * they leave uncovered only when the group is within a step of its limit,
 * stalls, or the kernel already reclaims (a pressure event): a guest in
 * rounds takes such memory back within a second, so asking it for it to
 * keep a headroom trades host room for guest swap (measured: (a)'s vm-up
 * asked for 64-96 MiB of it with 39-112 MiB free below the limit, and
 * swapped in 2 of 5 runs). The guest fills its balloon from the pages it
 * freed last first, so this tier takes nothing unbacked.
 */
function withFreshTier(p: HostParams, managed: readonly GroupVm[], spares: readonly Spare[], shares: Share[], toAsk: number,
  weights: ReadonlyMap<string, number>, staleStepBytes: number, gaveBytes: ReadonlyMap<string, number>, unitBytes?: (vm: string) => number): Share[] {
  const short = toAsk - freedBy(shares);
  if (short <= 0 || !managed.some((v) => (v.freshFreeBytes ?? 0) > 0)) return shares;
  const rest: Spare[] = managed.map((v) => {
    const first = spares.find((x) => x.vm === v.vm)!;
    const all = (v.freshFreeBytes ?? 0) > 0 ? spareOf(p, { ...v, freshFreeBytes: 0 }) : first;
    const extra = Math.max(0, all.cacheBytes + all.freeBytes - first.cacheBytes - first.freeBytes);
    return { vm: v.vm, cacheBytes: 0, freeBytes: extra, overheadBytes: 0, reserveBytes: first.reserveBytes, stale: first.stale };
  });
  const before = new Map([...gaveBytes].map(([vm, b]) => [vm, b + (shares.find((s) => s.vm === vm)?.bytes ?? 0)]));
  let more = splitNeed(short, rest, weights, staleStepBytes, before);
  if (unitBytes) more = inUnits(more, rest, staleStepBytes, unitBytes);
  return shares.map((s) => {
    const m = more.find((x) => x.vm === s.vm);
    if (!m || m.bytes <= 0) return s;
    return { ...s, bytes: s.bytes + m.bytes, fromFree: s.fromFree + m.bytes, fromFreshBytes: m.bytes };
  });
}

/** The rebalance candidates: VMs with fresh stats, what each holds and can give (rebalance.ts). */
function rebalanceMove(managed: readonly GroupVm[], spares: readonly Spare[], unitBytes: (vm: string) => number, maxBytes: number): Move | null {
  const rows = managed.filter((v) => !v.stale).map((v) => {
    const s = spares.find((x) => x.vm === v.vm)!;
    const backedSpare = s.cacheBytes + s.freeBytes;
    // Beyond its backed free memory the balloon takes the unbacked pages first, which free nothing.
    const giveableBytes = (s.overheadBytes ?? 0) > 0 ? s.freeBytes : backedSpare;
    // What a deflation gave back stays in what it could hold, so that a move does not lower its own share.
    const spareBytes = backedSpare + Math.min(s.overheadBytes ?? 0, v.returnedBytes ?? 0);
    return { vm: v.vm, weight: v.weight, heldBytes: heldOf(v), spareBytes, giveableBytes, unitBytes: Math.max(1, unitBytes(v.vm)) };
  });
  return findMove(rows, maxBytes);
}

/** What a VM's balloon holds or was asked for already. */
const heldOf = (v: GroupVm): number => Math.max(v.targetBytes, v.balloonBytes);
/** What the shares free on the host: their bytes less the unbacked pages taken on the way. */
const freedBy = (shares: readonly Share[]): number => shares.reduce((n, s) => n + s.bytes - (s.overheadBytes ?? 0), 0);

const mb = (bytes: number) => `${Math.round(bytes / 2 ** 20)} MiB`;
