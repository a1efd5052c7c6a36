// The host-wide policy runner: groups the VMs by the memory they share (the
// memcg, PSI scope or host memory their pressure source watches), samples
// that group every --sample-interval (1 s) and at once on every host
// pressure event, and sets each VM's target through its controller. The
// decisions are the pure functions of policy/host.ts (host policy) and
// policy/baselines.ts (mom, proxmox, each on its own interval); this file
// only reads the cgroup, builds the views and applies the result.
// VMs with --policy seed are left alone: their controller steps per event.
import type { Controller, HostView } from '../control/controller.js';
import type { HostDecisionRecord } from '../control/status.js';
import { Ring } from '../control/timeline.js';
import type { Logger } from '../log.js';
import { type BaselineVm, MOM, momStep, PROXMOX, proxmoxGoal, proxmoxStep } from '../policy/baselines.js';
import { freshFreeBytes } from '../policy/fresh-free.js';
import { returnedOf } from '../policy/returned.js';
import { reuseBytes } from '../policy/reuse.js';
import {
  DEFAULT_GIVE_BACK, DEFAULT_HOST_PARAMS, type GiveBackParams, type GroupState, groupStep, type GroupVm, type HostParams, initialGroupState, reserveOf,
} from '../policy/host.js';
import type { PolicyName } from '../policy/params.js';
import type { HostShareInfo } from '../policy/types.js';
import type { HostPressureEvent } from '../pressure/types.js';
import { mibText, PAGE } from '../units.js';
import { type MemcgReading, type MemcgScope, type ReadFile, readScope, scopeKey, scopeText } from './memcg-sample.js';

export const DEFAULT_SAMPLE_INTERVAL_MS = 1000;

/**
 * --weight means the same under every policy: a larger weight gives more of
 * the need. Proxmox shares mean the opposite (more shares keep more memory;
 * 0 disables auto-ballooning, as weight 0 never asks), hence 1000 / weight.
 */
export const proxmoxShares = (weight: number): number => (weight > 0 ? Math.max(1, Math.round(1000 / weight)) : 0);
/** Stats older than this many stats intervals are stale: the VM is asked for one step per sample at most. */
export const STALE_STATS_INTERVALS = 3;
/**
 * Before an inflation, stats older than this are refreshed (the guest refills
 * its stats buffer within ms) and the group decides again STATS_WAIT_MS later:
 * a guest that began to use its free memory since its last sample (5 s by
 * default) must not be asked for it. At most once per REFRESH_EVERY_MS.
 */
export const FRESH_STATS_MS = 1000;
export const STATS_WAIT_MS = 200;
export const REFRESH_EVERY_MS = 1000;
/** After a rebalance, the group's stats are refreshed this much later: their balloons have moved by then (64 MiB inflates in about 170 ms under TCG). */
export const MOVE_SETTLE_MS = 1000;

/** What the runner needs of a VM. */
export interface RunnerVm {
  readonly name: string;
  readonly controller: Pick<Controller, 'hostView' | 'hostTarget'>;
  /** Seconds between stats requests (0: never), to judge staleness. */
  readonly statsIntervalMs: number;
  /** Ask the guest for stats now; false when it holds no stats buffer. */
  refreshStats?(): boolean;
}

export interface RunnerOptions {
  intervalMs: number;
  log: Logger;
  host?: HostParams;
  give?: GiveBackParams;
  /** Monotonic ms (the controllers' clock). */
  now?: () => number;
  read?: ReadFile;
}

interface Group {
  key: string;
  scope: MemcgScope;
  vms: Set<RunnerVm>;
  state: GroupState;
  lastEvent: HostPressureEvent | null;
  lastRound: Record<'mom' | 'proxmox', number | null>;
  /** Stale VMs and when they were last asked (one step per interval). */
  staleAskedAt: Map<string, number>;
  /** Per VM, the unbacked free memory it never touched (returned.ts). */
  unbackedBaseline: Map<string, number>;
  lastReading: MemcgReading | null;
  lastError: string | null;
  /** When stats were last refreshed before an inflation, and the pending re-decision. */
  refreshedAt: number | null;
  refreshTimer: NodeJS.Timeout | null;
  /** After a rebalance: fresh stats once the balloons moved, so the next move need not wait a stats interval. */
  moveRefreshTimer: NodeJS.Timeout | null;
}

export class PolicyRunner {
  readonly decisions = new Ring<HostDecisionRecord>(1000);
  private readonly groups = new Map<string, Group>();
  private readonly scopes = new Map<RunnerVm, string>();
  private timer: NodeJS.Timeout | null = null;
  private seq = 1;
  private readonly now: () => number;
  private readonly host: HostParams;
  private readonly give: GiveBackParams;

  constructor(private readonly opts: RunnerOptions) {
    this.now = opts.now ?? (() => performance.now());
    this.host = opts.host ?? DEFAULT_HOST_PARAMS;
    this.give = opts.give ?? DEFAULT_GIVE_BACK;
  }

  /** A VM joins the group of its scope (null: it shares no memory the runner can read). */
  add(vm: RunnerVm, scope: MemcgScope | null): void {
    if (!scope) return;
    const key = scopeKey(scope);
    let g = this.groups.get(key);
    if (!g) {
      g = {
        key, scope, vms: new Set(), state: initialGroupState(), lastEvent: null, lastRound: { mom: null, proxmox: null },
        staleAskedAt: new Map(), unbackedBaseline: new Map(), lastReading: null, lastError: null, refreshedAt: null, refreshTimer: null, moveRefreshTimer: null,
      };
      this.groups.set(key, g);
    }
    g.vms.add(vm);
    this.scopes.set(vm, key);
    this.timer ??= setInterval(() => this.safely('sample', () => this.tick()), this.opts.intervalMs).unref();
  }

  remove(vm: RunnerVm): void {
    const key = this.scopes.get(vm);
    this.scopes.delete(vm);
    const g = key ? this.groups.get(key) : undefined;
    if (!g) return;
    g.vms.delete(vm);
    g.staleAskedAt.delete(vm.name);
    g.unbackedBaseline.delete(vm.name);
    if (g.vms.size === 0) {
      if (g.refreshTimer) clearTimeout(g.refreshTimer);
      if (g.moveRefreshTimer) clearTimeout(g.moveRefreshTimer);
      this.groups.delete(g.key);
    }
    if (this.groups.size === 0) this.stop();
  }

  /** A host pressure event reached `vm`: its group decides at once (once per event, however many VMs share it). */
  pressure(vm: RunnerVm, ev: HostPressureEvent): void {
    const g = this.groups.get(this.scopes.get(vm) ?? '');
    if (!g || g.lastEvent === ev) return;
    g.lastEvent = ev;
    this.safely('pressure', () => this.runHost(g, `pressure ${ev.source} ${ev.level}${ev.count > 1 ? ` x${ev.count}` : ''}`, ev.wokeAt));
  }

  /** A failing round is logged, never a crash of the daemon: the VMs keep their targets. */
  private safely(what: string, f: () => void): void {
    try {
      f();
    } catch (err) {
      this.opts.log.error({ err, what }, 'host policy round failed; targets unchanged');
    }
  }

  /** The periodic sample: the host policy every interval, the baselines on their own intervals. */
  tick(): void {
    for (const g of [...this.groups.values()]) {
      this.runHost(g, 'sample');
      for (const policy of ['mom', 'proxmox'] as const) {
        const every = policy === 'mom' ? MOM.intervalMs : PROXMOX.intervalMs;
        const last = g.lastRound[policy];
        const now = this.now();
        if (last !== null && now - last < every) continue;
        if (this.runBaseline(g, policy)) g.lastRound[policy] = now;
      }
    }
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    for (const g of this.groups.values()) {
      if (g.refreshTimer) clearTimeout(g.refreshTimer);
      g.refreshTimer = null;
      if (g.moveRefreshTimer) clearTimeout(g.moveRefreshTimer);
      g.moveRefreshTimer = null;
    }
  }

  /** Per group: its scope, VMs, the last reading and decision. */
  status(): Array<{ group: string; vms: string[]; reading: MemcgReading | null; error: string | null; lastDecision: HostDecisionRecord | null }> {
    return [...this.groups.values()].map((g) => ({
      group: scopeText(g.scope), vms: [...g.vms].map((v) => v.name).sort(), reading: g.lastReading, error: g.lastError,
      lastDecision: this.decisions.last().reverse().find((d) => d.group === scopeText(g.scope)) ?? null,
    }));
  }

  /** The group's VMs of `policy`; none when none of them has a frontend (nothing to read the memcg for). */
  private members(g: Group, policy: PolicyName): Array<{ vm: RunnerVm; view: HostView }> {
    const m = [...g.vms].map((vm) => ({ vm, view: vm.controller.hostView() })).filter((x) => x.view.policy === policy);
    return m.some((x) => x.view.connected) ? m : [];
  }

  private read(g: Group): MemcgReading | null {
    try {
      const r = readScope(g.scope, this.opts.read);
      if (g.lastError) this.opts.log.info({ group: scopeText(g.scope) }, 'host policy: the group can be read again');
      g.lastError = null;
      g.lastReading = r;
      return r;
    } catch (err) {
      const msg = (err as Error).message;
      if (msg !== g.lastError) {
        this.opts.log.warn({ group: scopeText(g.scope), err: msg }, `host policy: cannot read ${scopeText(g.scope)}; its VMs keep their targets until it can be read`);
      }
      g.lastError = msg;
      return null;
    }
  }

  /** What the VM's balloon gave back that is still unbacked; a new frontend (a restarted guest) starts afresh. */
  private returned(g: Group, v: HostView, held: number): number {
    if (!v.connected) {
      g.unbackedBaseline.delete(v.vm);
      return 0;
    }
    const r = returnedOf(g.unbackedBaseline.get(v.vm), { unbackedFreeBytes: v.ramBytes - held - (v.backedBytes ?? 0), settled: v.targetBytes === v.balloonBytes });
    if (r.baselineBytes === undefined) g.unbackedBaseline.delete(v.vm);
    else g.unbackedBaseline.set(v.vm, r.baselineBytes);
    return r.returnedBytes;
  }

  private excluded(v: HostView, withHysteresis: boolean): string | null {
    if (!v.connected) return 'no frontend';
    if (!v.auto) return 'manual or auto off';
    if (v.ramBytes === 0) return 'guest RAM unknown';
    if (withHysteresis && v.inGuestPressure) return 'guest pressure (hysteresis)';
    return null;
  }

  private runHost(g: Group, trigger: string, wokeAt?: bigint): void {
    const members = this.members(g, 'host');
    if (members.length === 0) return;
    const reading = this.read(g);
    if (!reading) return;
    const now = this.now();
    const views: GroupVm[] = [];
    const why = new Map<string, string | null>();
    for (const { vm, view: v } of members) {
      const excluded = this.excluded(v, true);
      why.set(v.vm, excluded);
      const stale = v.statsAgeMs === null || vm.statsIntervalMs === 0 || v.statsAgeMs > STALE_STATS_INTERVALS * vm.statsIntervalMs;
      // A stale VM gives one step per interval: asked within the last one, it has no room now.
      const askedAt = g.staleAskedAt.get(v.vm);
      const held = Math.max(v.targetBytes, v.balloonBytes);
      const ceiling = !stale ? v.ceilingBytes
        : askedAt !== undefined && now - askedAt < this.opts.intervalMs ? Math.min(v.ceilingBytes, held)
          : Math.min(v.ceilingBytes, held + v.stepBytes);
      if (!stale) g.staleAskedAt.delete(v.vm);
      views.push({
        vm: v.vm, weight: v.weight, ramBytes: v.ramBytes, balloonBytes: v.balloonBytes, ceilingBytes: ceiling, reserveBytes: v.reserveBytes,
        stats: v.stats, stale, useBps: v.useBps, targetBytes: v.targetBytes, excluded: excluded !== null,
        ...(v.statsAgeMs === null ? {} : { statsAtMs: now - v.statsAgeMs }),
        reuseBytes: this.host.guestCycleWindowMs > 0
          ? reuseBytes(v.recentUse.filter((x) => x.ageMs <= this.host.guestCycleWindowMs).map((x) => x.usedBytes), this.host.guestCycleBytes, this.host.guestCyclePeak)
          : 0,
        freshFreeBytes: freshFreeBytes(v.recentUse, this.host.guestCycleBytes, this.host.guestFreshFreeMs),
        ...(v.backedBytes === null ? {} : { unbackedFreeBytes: Math.max(0, v.ramBytes - held - v.backedBytes), returnedBytes: this.returned(g, v, held) }),
      });
    }
    const steps = new Map(members.map((m) => [m.view.vm, m.view.stepBytes]));
    const maxStep = Math.max(...steps.values());
    const sample = { limitBytes: reading.limitBytes, usageBytes: reading.usageBytes, at: now, psiSomeAvg10: reading.psiSomeAvg10, reclaiming: trigger.startsWith('pressure') };
    const { state, decision } = groupStep(this.host, this.give, g.state, sample, views, maxStep, (vm) => steps.get(vm) ?? maxStep);
    if (decision.need.needBytes > decision.outstandingBytes && this.refreshFirst(g, members, views, now, trigger, wokeAt)) return;
    g.state = state;
    const seq = this.seq;
    const rows: HostDecisionRecord['vms'] = [];
    const overOf = (vm: string): number => decision.shares.find((s) => s.vm === vm)?.overheadBytes ?? 0;
    for (const v of views) {
      const spare = decision.spares.find((s) => s.vm === v.vm);
      const next = decision.targets.get(v.vm);
      const shareBytes = next === undefined ? 0 : next - v.targetBytes;
      let newTarget = v.targetBytes;
      if (next !== undefined) {
        const host: HostShareInfo = {
          decision: seq, policy: 'host', needBytes: decision.need.needBytes, spareBytes: spare ? spare.cacheBytes + spare.freeBytes : 0,
          cacheSpareBytes: spare?.cacheBytes ?? 0, weight: v.weight, stale: v.stale, shareBytes,
        };
        const over = overOf(v.vm);
        const fresh = decision.shares.find((x) => x.vm === v.vm)?.fromFreshBytes ?? 0;
        const move = decision.move;
        const reason = move && (move.from === v.vm || move.to === v.vm)
          ? `rebalance in ${scopeText(g.scope)}: ${move.from} was ahead of its weighted share of the balloons (${mibText(move.fromShareBytes)}), `
            + `${move.to} behind its own (${mibText(move.toShareBytes)}) with memory to spare: ${mibText(move.bytes)} ${move.to === v.vm ? 'more' : 'less'} for this VM (weight ${v.weight})`
          : shareBytes > 0
          ? `host need ${mibText(decision.need.needBytes)} in ${scopeText(g.scope)}: this VM's share ${mibText(shareBytes)} of ${mibText(host.spareBytes)} it can spare (weight ${v.weight}${v.stale ? ', stats stale: one step' : ''}${over ? `; of it ${mibText(over)} of free memory the host never backed` : ''}${fresh ? `; of it ${mibText(fresh)} it has just freed, as the rest did not cover the need` : ''})`
          : `host has room in ${scopeText(g.scope)}: ${mibText(-shareBytes)} given back`;
        const d = members.find((m) => m.view.vm === v.vm)!.vm.controller.hostTarget(next, `host policy ${trigger}`, reason, host, wokeAt);
        newTarget = d ? d.newTargetPages * PAGE : v.targetBytes;
        if (v.stale && shareBytes > 0) g.staleAskedAt.set(v.vm, now);
      }
      rows.push({
        vm: v.vm, weight: v.weight, spareBytes: spare ? spare.cacheBytes + spare.freeBytes : 0, cacheSpareBytes: spare?.cacheBytes ?? 0,
        stale: v.stale, excluded: why.get(v.vm) ?? null, shareBytes, oldTargetBytes: v.targetBytes, newTargetBytes: newTarget,
        ...(spare?.overheadBytes ? { unbackedBytes: spare.overheadBytes } : {}),
        ...(spare?.overheadBytes && v.returnedBytes ? { returnedBytes: Math.min(spare.overheadBytes, v.returnedBytes) } : {}),
        ...(shareBytes > 0 && overOf(v.vm) ? { shareUnbackedBytes: overOf(v.vm) } : {}),
        ...(v.freshFreeBytes ? { freshFreeBytes: v.freshFreeBytes } : {}),
      });
    }
    if (decision.move && !g.moveRefreshTimer) {
      // All of the group's: the next move waits for stats sampled after this one from every VM it weighs.
      g.moveRefreshTimer = setTimeout(() => {
        g.moveRefreshTimer = null;
        for (const { vm } of this.members(g, 'host')) vm.refreshStats?.();
      }, MOVE_SETTLE_MS);
      g.moveRefreshTimer.unref();
    }
    if (decision.targets.size === 0 && decision.need.needBytes === 0) return;
    this.record(g, 'host', trigger, reading, {
      needBytes: decision.need.needBytes, headroomBytes: decision.need.headroomBytes, freeBytes: decision.need.freeBytes,
      growthBps: Math.round(decision.need.growthBps), outstandingBytes: decision.outstandingBytes, reason: decision.reason,
    }, rows);
  }

  /**
   * Before inflating on stats older than FRESH_STATS_MS: ask those guests for
   * fresh ones and decide again STATS_WAIT_MS later. True when it did (the
   * caller applies nothing now).
   */
  private refreshFirst(g: Group, members: Array<{ vm: RunnerVm; view: HostView }>, views: readonly GroupVm[], now: number,
    trigger: string, wokeAt?: bigint): boolean {
    if (g.refreshTimer) return true; // a re-decision on fresh stats is due: this one folds into it
    if (g.refreshedAt !== null && now - g.refreshedAt < REFRESH_EVERY_MS) return false;
    const old = members.filter(({ vm, view }) => {
      const v = views.find((x) => x.vm === view.vm);
      return v && !v.excluded && !v.stale && view.statsAgeMs !== null && view.statsAgeMs > FRESH_STATS_MS && vm.refreshStats !== undefined;
    });
    const asked = old.filter(({ vm }) => vm.refreshStats!()).length;
    if (asked === 0) return false;
    g.refreshedAt = now;
    g.refreshTimer = setTimeout(() => {
      g.refreshTimer = null;
      if (this.groups.get(g.key) === g) this.safely('refresh', () => this.runHost(g, `${trigger}, fresh stats`, wokeAt));
    }, STATS_WAIT_MS);
    g.refreshTimer.unref();
    return true;
  }

  /** One round of a baseline for its VMs in `g`; false when it could not run (nothing to do, or the group unreadable). */
  private runBaseline(g: Group, policy: 'mom' | 'proxmox'): boolean {
    const members = this.members(g, policy);
    if (members.length === 0) return false;
    const reading = g.lastReading && this.members(g, 'host').length > 0 ? g.lastReading : this.read(g);
    if (!reading) return false;
    const hostMem = { totalBytes: reading.limitBytes, freeBytes: Math.max(0, reading.limitBytes - reading.usageBytes) };
    const usable = members.filter((m) => this.excluded(m.view, false) === null);
    const vms: BaselineVm[] = usable.map(({ view: v }) => ({
      vm: v.vm, ramBytes: v.ramBytes, sizeBytes: v.ramBytes - v.balloonBytes,
      // Proxmox balloons only VMs with a minimum: the floor, or else the reserve.
      minBytes: policy === 'proxmox' ? (v.floorBytes || reserveOf(v.ramBytes, v.reserveBytes)) : v.floorBytes,
      freeBytes: v.stats?.freeBytes ?? null, shares: proxmoxShares(v.weight),
    }));
    const sizes = policy === 'mom' ? momStep(hostMem, vms) : proxmoxStep(hostMem, vms);
    const needBytes = policy === 'mom'
      ? Math.max(0, Math.ceil(MOM.pressureThreshold * hostMem.totalBytes - hostMem.freeBytes))
      : -proxmoxGoal(hostMem);
    const free = `${mibText(hostMem.freeBytes)} free of ${mibText(hostMem.totalBytes)}`;
    const reason = policy === 'mom'
      ? `MOM round: ${free} (${Math.round((100 * hostMem.freeBytes) / Math.max(1, hostMem.totalBytes))} %; shrink below 20 %)`
      : `Proxmox round: ${free}; goal ${mibText(proxmoxGoal(hostMem))} to reach 80 % use`;
    const seq = this.seq;
    const rows: HostDecisionRecord['vms'] = members.map(({ vm, view: v }) => {
      const size = sizes.get(v.vm);
      let newTarget = v.targetBytes;
      let shareBytes = 0;
      if (size !== undefined) {
        const next = Math.max(0, v.ramBytes - size);
        shareBytes = next - v.targetBytes;
        const host: HostShareInfo = { decision: seq, policy, needBytes, spareBytes: 0, cacheSpareBytes: 0, weight: v.weight, stale: v.stats === null, shareBytes };
        const d = vm.controller.hostTarget(next, `${policy} round`, `${reason}: size ${mibText(v.ramBytes - v.balloonBytes)} -> ${mibText(size)}`, host);
        newTarget = d ? d.newTargetPages * PAGE : v.targetBytes;
      }
      return {
        vm: v.vm, weight: v.weight, spareBytes: 0, cacheSpareBytes: 0, stale: v.stats === null, excluded: this.excluded(v, false),
        shareBytes, oldTargetBytes: v.targetBytes, newTargetBytes: newTarget,
      };
    });
    this.record(g, policy, 'round', reading, {
      needBytes, headroomBytes: 0, freeBytes: hostMem.freeBytes, growthBps: 0, outstandingBytes: 0, reason,
    }, rows);
    return true;
  }

  private record(g: Group, policy: string, trigger: string, reading: MemcgReading,
    d: Pick<HostDecisionRecord, 'needBytes' | 'headroomBytes' | 'freeBytes' | 'growthBps' | 'outstandingBytes' | 'reason'>, vms: HostDecisionRecord['vms']): void {
    const changed = vms.some((v) => v.newTargetBytes !== v.oldTargetBytes);
    const group = scopeText(g.scope);
    const rec: HostDecisionRecord = {
      seq: this.seq, time: new Date().toISOString(), group, policy, trigger, ...d,
      limitBytes: reading.limitBytes, usageBytes: reading.usageBytes, psiSomeAvg10: reading.psiSomeAvg10, vms, count: 1,
    };
    // A run of decisions that moved nothing (a need already on its way, a
    // storm of events) folds into one entry, as the per-VM history does.
    const last = this.decisions.peek();
    if (!changed && last && last.group === group && last.policy === policy && last.vms.every((v) => v.newTargetBytes === v.oldTargetBytes)) {
      this.decisions.replaceLast({ ...rec, seq: last.seq, count: last.count + 1 });
      return;
    }
    this.seq++;
    this.decisions.push(rec);
    if (changed) {
      this.opts.log.info({ group, policy, trigger, need: mibText(d.needBytes), shares: vms.filter((v) => v.shareBytes !== 0).map((v) => `${v.vm} ${mibText(v.shareBytes)}`) },
        `host policy: ${d.reason}`);
    }
  }
}
