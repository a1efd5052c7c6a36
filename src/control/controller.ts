// The controller: feeds device and host-pressure events into the pure policy,
// pushes its target to the device, keeps the decision history, and answers
// the control socket.
import { EventEmitter } from 'node:events';
import type { BalloonDevice } from '../device/balloon.js';
import { BalloonError } from '../errors.js';
import type { Logger } from '../log.js';
import { mergeParams, PolicyParams } from '../policy/params.js';
import { ceilingPages, Decision, guestInPressure, initialState, mode, PolicyEvent, PolicyState, step } from '../policy/step.js';
import type { HostShareInfo } from '../policy/types.js';
import type { HostPressureEvent } from '../pressure/types.js';
import { featureNames } from '../virtio/features.js';
import { PressureLatency } from './latency.js';
import type { PeerCred } from './peercred.js';
import type { VmRequest } from './protocol.js';
import type { DaemonStatus, DecisionRecord } from './status.js';
import { History } from './timeline.js';
import { bytesToPages, formatBytes, PAGE, pagesToBytes, parseSize, sizeToBytes } from '../units.js';

export interface ControllerOptions {
  vm: string;
  version: string;
  vhostSocket: string | null;
  params: PolicyParams;
  autoEnabled: boolean;
  pressureDescription: string;
  /** Switch the host pressure source to another vmpressure level; returns its new description. */
  retunePressureLevel?: (level: string) => string;
  log: Logger;
  /** Monotonic clock in ms (injectable for tests). */
  now?: () => number;
  /** Also gets every pressure-to-CONFIG_CHANGE latency (the daemon's labelled metric). */
  observeLatency?: (seconds: number) => void;
}

/** What an operator set at run time: kept across daemon restarts (service/state.ts). */
export interface RuntimeSettings {
  hold: { owner: string; targetBytes: number } | null;
  autoEnabled: boolean;
  params: PolicyParams;
}

/** A history entry: runs of ignored events with the same cause fold into one (`count`, from `firstTime`). */
export interface HistoryRecord extends DecisionRecord {
  cause: string | null;
  count: number;
  firstTime?: string;
}

/** What the host-wide runner needs of one VM (bytes; times on the controller's clock). */
export interface HostView {
  vm: string;
  connected: boolean;
  policy: PolicyParams['policy'];
  /** Automatic mode on, no manual hold. */
  auto: boolean;
  inGuestPressure: boolean;
  weight: number;
  reserveBytes: number;
  stepBytes: number;
  floorBytes: number;
  ramBytes: number;
  balloonBytes: number;
  targetBytes: number;
  ceilingBytes: number;
  /** Latest stats, MemAvailable corrected by what the balloon will have moved since (see hostView). */
  stats: { availableBytes?: number; cachesBytes?: number; freeBytes?: number } | null;
  /** Age of the latest stats sample (ms), or null without one. */
  statsAgeMs: number | null;
  /** How fast the guest itself uses up MemAvailable (bytes/s). */
  useBps: number;
  /** Host memory backing its RAM (the memfd's allocated blocks), or null when not known. */
  backedBytes: number | null;
  /** Its use (RAM - balloon - MemAvailable) at each recent stats sample, oldest first, with the sample's age (ms). */
  recentUse: ReadonlyArray<{ ageMs: number; usedBytes: number }>;
}

/** Stats samples of guest use kept for the host policy's cycle detection (at 1 s stats: the last 2 minutes). */
const RECENT_USE_SAMPLES = 120;

export class Controller extends EventEmitter<{ event: [unknown]; runtimeChanged: [RuntimeSettings] }> {
  private state: PolicyState;
  private pressureDescription: string;
  readonly history = new History();
  private readonly recentUse: Array<{ at: number; usedBytes: number }> = [];
  readonly pressureCounts = new Map<string, number>();
  readonly decisionCounts = new Map<string, number>();
  /** Host pressure wake-up to CONFIG_CHANGE_MSG sent, per event that moved the target. */
  readonly pressureLatency: PressureLatency;
  private lastRecord: HistoryRecord | null = null;
  private hostEvents = 0;
  private lastHostEventAt: number | null = null;
  private readonly now: () => number;
  private readonly wallAt = (mono: number) => new Date(Date.now() - (this.now() - mono)).toISOString();

  constructor(readonly device: BalloonDevice, private readonly opts: ControllerOptions) {
    super();
    this.now = opts.now ?? (() => performance.now());
    this.pressureLatency = new PressureLatency(opts.observeLatency);
    this.pressureDescription = opts.pressureDescription;
    this.state = initialState(opts.params, opts.autoEnabled);
    // The balloon size the policy compares targets with is the device's count
    // from the inflate/deflate queues: it moves per buffer, before the guest
    // writes `actual`, so a deflate-on-OOM is seen at its real size when its
    // guest-pressure event follows. `actual` only re-bases that count (new
    // connection, after a reset), and then the policy hears of it.
    device.on('actual', (pages) => {
      this.balloonSize('actual');
      this.sample();
      this.publish({ type: 'actual', bytes: pagesToBytes(pages) });
    });
    device.on('memory', (bytes) => this.guestRamKnown(bytes));
    // A new frontend may be another guest: its own target, hold and
    // hysteresis come back only if it reports the balloon (recovered).
    device.on('attached', () => this.apply({ type: 'frontend-attached' }));
    device.on('recovered', (pages) => {
      if (this.state.targetPages === 0 || this.state.previousGuest) this.apply({ type: 'recover', pages });
    });
    device.on('newGuest', () => this.apply({ type: 'new-guest' }));
    device.on('balloonChanged', () => {
      this.balloonSize('queues');
      this.sample();
    });
    device.on('connected', () => this.publish({ type: 'connected', features: featureNames(device.features, device.choice.messageVqBit) }));
    device.on('disconnected', (reason) => this.publish({ type: 'disconnected', reason }));
    device.on('stats', (s) => {
      if (s.stats.total_memory && this.state.guestRamBytes === 0) this.apply({ type: 'guest-ram', bytes: device.guestRamBytes || s.stats.total_memory });
      this.apply({ type: 'stats', stats: s.stats });
      const ram = device.guestRamBytes || this.state.guestRamBytes;
      if (s.stats.available_memory !== undefined && ram > 0) {
        const usedBytes = Math.max(0, ram - pagesToBytes(device.balloonPages) - s.stats.available_memory);
        this.recentUse.push({ at: this.now(), usedBytes });
        if (this.recentUse.length > RECENT_USE_SAMPLES) this.recentUse.shift();
      }
      this.sample();
    });
    device.on('guestPressure', ({ source, count }) => {
      this.history.mark('guest');
      this.apply({ type: 'guest-pressure', source, count });
    });
    device.on('frontendTarget', (pages) => {
      // QMP `balloon` through our QEMU device: a manual target. QMP has
      // already said yes, so a target above the ceiling is lowered to it
      // (cause `ceiling` in the history), never refused.
      this.apply({ type: 'manual-target', pages, owner: 'qemu-monitor' });
    });
    device.on('incomingTarget', (pages) => this.apply({ type: 'incoming-target', pages }));
    device.on('incomingState', (st) => this.apply({ type: 'incoming-state', pages: st.targetPages, hold: st.hold, guestPressureAgeMs: st.guestPressureAgeMs }));
    // What a migration carries of the policy (device-state.ts).
    device.policyHandover = () => ({
      hold: this.state.hold ? { owner: this.state.hold.owner } : null,
      guestPressureAgeMs: this.state.lastGuestPressureAt === null ? null : Math.max(0, this.now() - this.state.lastGuestPressureAt),
    });
    device.on('inflated', () => {
      this.balloonSize('queues');
      this.sample();
    });
    device.on('deflated', () => {
      this.balloonSize('queues');
      this.sample();
    });
  }

  private balloonSize(from: 'queues' | 'actual'): void {
    const pages = this.device.balloonPages;
    if (pages !== this.state.balloonPages) this.apply({ type: 'balloon-size', pages, from });
  }

  get policy(): Readonly<PolicyState> {
    return this.state;
  }

  /** The operator's run-time settings, to persist. */
  runtime(): RuntimeSettings {
    const s = this.state;
    return { hold: s.hold ? { owner: s.hold.owner, targetBytes: pagesToBytes(s.targetPages) } : null, autoEnabled: s.autoEnabled, params: s.params };
  }

  /** Put back what runtime() returned before a restart (no frontend yet). */
  restoreRuntime(r: RuntimeSettings): void {
    this.apply({ type: 'tune', params: mergeParams(this.state.params, { ...r.params, enabled: r.autoEnabled }) });
    if (r.hold) this.apply({ type: 'manual-target', pages: bytesToPages(r.hold.targetBytes), owner: r.hold.owner });
  }

  /** What host pressure this VM listens to (once its subscription is made). */
  setPressureDescription(description: string): void {
    this.pressureDescription = description;
  }

  /** A host pressure source fired. */
  hostPressure(ev: HostPressureEvent): void {
    this.hostEvents += ev.count;
    this.lastHostEventAt = this.now();
    const key = `${ev.source}/${ev.level}`;
    this.pressureCounts.set(key, (this.pressureCounts.get(key) ?? 0) + ev.count);
    this.history.mark('host');
    this.apply({ type: 'host-pressure', source: ev.source, level: ev.level, count: ev.count }, ev.wokeAt);
  }

  /**
   * This VM as the host-wide policy sees it. MemAvailable (and MemFree) in
   * the last sample were measured with the balloon at the size it had then;
   * what the balloon will have taken since, once it reaches its target, is
   * no longer available, so it is subtracted.
   */
  hostView(): HostView {
    const s = this.state;
    const now = this.now();
    const dev = this.device;
    const st = s.prevStats;
    const balloon = pagesToBytes(dev.balloonPages);
    const target = pagesToBytes(s.targetPages);
    const since = Math.max(0, Math.max(target, balloon) - pagesToBytes(s.prevStatsBalloonPages));
    const less = (v: number | undefined) => (v === undefined ? undefined : Math.max(0, v - since));
    const ceiling = pagesToBytes(ceilingPages(s));
    return {
      vm: this.opts.vm, connected: dev.connected, policy: s.params.policy, auto: mode(s) === 'auto', inGuestPressure: guestInPressure(s, now),
      weight: s.params.weight, reserveBytes: s.params.reserveBytes, stepBytes: s.params.stepBytes, floorBytes: s.params.floorBytes,
      ramBytes: dev.guestRamBytes || s.guestRamBytes, balloonBytes: balloon, targetBytes: target, ceilingBytes: ceiling,
      stats: st ? {
        ...(st.available_memory !== undefined ? { availableBytes: less(st.available_memory)! } : {}),
        ...(st.disk_caches !== undefined ? { cachesBytes: st.disk_caches } : {}),
        ...(st.free_memory !== undefined ? { freeBytes: less(st.free_memory)! } : {}),
      } : null,
      statsAgeMs: s.prevStatsAt === null ? null : now - s.prevStatsAt,
      useBps: s.guestUseBps,
      backedBytes: dev.backedBytes(),
      recentUse: this.recentUse.map((x) => ({ ageMs: now - x.at, usedBytes: x.usedBytes })),
    };
  }

  /** The host-wide runner sets a target (host policy, mom, proxmox); returns the decision. */
  hostTarget(bytes: number, event: string, reason: string, host?: HostShareInfo, wokeAt?: bigint): Decision | null {
    return this.apply({ type: 'host-target', pages: bytesToPages(bytes), event, reason, ...(host ? { host } : {}) }, wokeAt);
  }

  /** Guest RAM from the memory table, once QEMU connected. */
  guestRamKnown(bytes: number): void {
    if (bytes > 0) this.apply({ type: 'guest-ram', bytes });
  }

  /** `wokeAt`: the host pressure wake-up behind `ev`, timed up to the CONFIG_CHANGE it causes. */
  private apply(ev: PolicyEvent, wokeAt?: bigint): Decision | null {
    const now = this.now();
    const prev = this.state;
    const r = step(this.state, ev, now);
    this.state = r.state;
    if (prev.hold !== r.state.hold || prev.autoEnabled !== r.state.autoEnabled || prev.params !== r.state.params
      || (r.state.hold && prev.targetPages !== r.state.targetPages)) {
      this.emit('runtimeChanged', this.runtime());
    }
    if (r.setTarget !== null) {
      const before = this.device.target;
      this.device.setTarget(r.setTarget);
      // setTarget sends CONFIG_CHANGE_MSG synchronously (a non-blocking send)
      // when the target moved and QEMU is connected: it has been sent now,
      // before logging and watchers below.
      if (wokeAt !== undefined && this.device.target !== before && this.device.connected) this.pressureLatency.observeSince(wokeAt);
    }
    // Stamped with the instant the policy decided, not after the send: a
    // send that waited for a core would shift it and shrink the gap to the
    // next decision below the rate limit.
    if (r.decision) this.record(r.decision, this.wallAt(now));
    return r.decision;
  }

  private record(d: Decision, time: string): void {
    this.decisionCounts.set(d.rule, (this.decisionCounts.get(d.rule) ?? 0) + 1);
    const last = this.lastRecord;
    const fold = last !== null && this.history.decisions.peek() === last && d.ignored && last.cause !== null
      && last.rule === d.rule && last.cause === d.cause && last.newTargetBytes === pagesToBytes(d.newTargetPages) ? last : null;
    const rec: HistoryRecord = {
      time, rule: d.rule, event: d.event,
      oldTargetBytes: pagesToBytes(d.oldTargetPages), newTargetBytes: pagesToBytes(d.newTargetPages), reason: d.reason,
      cause: d.cause, count: fold ? fold.count + 1 : 1, ...(fold ? { firstTime: fold.firstTime ?? fold.time } : {}),
      ...(d.host ? { host: d.host } : {}),
    };
    // A storm of ignored host events (85 a second measured) folds into one
    // entry with a count, so the bounded history keeps the decisions that matter.
    if (fold) this.history.decisions.replaceLast(rec);
    else this.history.decisions.push(rec);
    this.lastRecord = rec;
    const changed = d.oldTargetPages !== d.newTargetPages;
    // Ignored host events come in storms: keep them out of the info log.
    this.opts.log[changed || !d.rule.endsWith('ignored') ? 'info' : 'debug'](
      { rule: d.rule, event: d.event, oldTarget: formatBytes(rec.oldTargetBytes), newTarget: formatBytes(rec.newTargetBytes), reason: d.reason },
      changed ? 'balloon target changed' : 'policy decision');
    this.publish({ type: 'decision', ...rec });
    if (changed) this.sample();
  }

  private sample(): void {
    const avail = this.device.latestStats?.stats.available_memory;
    this.history.sample(pagesToBytes(this.state.targetPages), pagesToBytes(this.device.actual), avail);
  }

  private publish(ev: Record<string, unknown>): void {
    this.emit('event', { time: new Date().toISOString(), ...ev });
  }

  subscribe(listener: (event: unknown) => void): () => void {
    this.on('event', listener);
    return () => this.off('event', listener);
  }

  private setManual(pages: number, owner: string): void {
    const max = ceilingPages(this.state);
    if (pages > max) {
      const floor = this.state.params.floorBytes;
      throw new BalloonError('EBALLOON_RANGE', `target ${formatBytes(pagesToBytes(pages))} is above the ceiling ${formatBytes(pagesToBytes(max))}`,
        floor > 0 ? `the floor keeps the guest at ${formatBytes(floor)} or more; lower the target or the floor (balloonctl tune VM --floor SIZE)` : 'lower the target or raise --max-balloon');
    }
    this.apply({ type: 'manual-target', pages, owner });
  }

  handle(req: VmRequest, peer: PeerCred): unknown {
    switch (req.op) {
      case 'hello':
        return { protocol: 1, vm: this.opts.vm, version: this.opts.version };
      case 'status':
        return this.status();
      case 'history': {
        const limit = req.limit ?? 1000;
        return { vm: this.opts.vm, decisions: this.history.decisions.last(limit), samples: this.history.samples.last(), marks: this.history.marks.last() };
      }
      case 'set-target': {
        if (req.value === 'release') {
          const d = this.apply({ type: 'release' });
          return { released: d !== null, mode: mode(this.state) };
        }
        const bytes = sizeToBytes(parseSize(req.value), this.device.guestRamBytes || this.state.guestRamBytes);
        this.setManual(bytesToPages(bytes), req.owner ?? `uid ${peer.uid}`);
        return { targetBytes: pagesToBytes(this.state.targetPages), mode: mode(this.state) };
      }
      case 'auto':
        this.apply({ type: 'auto', enabled: req.enabled });
        return { mode: mode(this.state), autoEnabled: this.state.autoEnabled };
      case 'tune': {
        const { level, ...rest } = req.params;
        // Validate the policy part first: a bad value changes nothing at all.
        const params = mergeParams(this.state.params, rest);
        if (level !== undefined) {
          if (!this.opts.retunePressureLevel) throw new BalloonError('EBALLOON_CONFIG', 'this daemon has no vmpressure source', 'the level applies to --pressure vmpressure');
          this.pressureDescription = this.opts.retunePressureLevel(String(level));
          this.opts.log.info({ source: this.pressureDescription }, 'host pressure level changed');
        }
        this.apply({ type: 'tune', params });
        return { params, ...(level !== undefined ? { pressure: this.pressureDescription } : {}) };
      }
    }
  }

  status(): DaemonStatus {
    const s = this.state;
    const now = this.now();
    const dev = this.device;
    const stats = dev.latestStats;
    return {
      vm: this.opts.vm,
      pid: process.pid,
      version: this.opts.version,
      vhostSocket: this.opts.vhostSocket,
      connected: dev.connected,
      features: featureNames(dev.features, dev.choice.messageVqBit),
      guestRamBytes: dev.guestRamBytes || s.guestRamBytes,
      targetBytes: pagesToBytes(dev.target),
      actualBytes: pagesToBytes(dev.actual),
      balloonBytes: pagesToBytes(dev.balloonPages),
      mode: mode(s),
      hold: s.hold ? { owner: s.hold.owner, sinceTime: this.wallAt(s.hold.since) } : null,
      pressure: {
        host: {
          source: this.pressureDescription, events: this.hostEvents, lastEventTime: this.lastHostEventAt === null ? null : this.wallAt(this.lastHostEventAt),
          toConfigChange: this.pressureLatency.snapshot(),
        },
        guest: {
          inPressure: guestInPressure(s, now),
          untilTime: s.lastGuestPressureAt === null ? null : this.wallAt(s.lastGuestPressureAt + s.params.hysteresisMs),
          lastSignal: s.lastGuestPressureSource,
        },
      },
      stats: stats ? { time: stats.wallTime, values: stats.stats } : null,
      params: { ...s.params, autoEnabled: s.autoEnabled, pageSize: PAGE },
      decisions: this.history.decisions.last(20),
      counters: dev.counters,
      configChange: dev.configChangeState(),
    };
  }
}
