// One VM's balloon device inside the daemon: its vhost-user socket (or a
// connected fd), the device, the controller with its policy, and its share
// of host pressure. The host daemon (host.ts) owns any number of these.
import { EventEmitter } from 'node:events';
import { Controller, type RuntimeSettings } from '../control/controller.js';
import type { MetricsSource } from '../control/metrics.js';
import { BalloonDevice } from '../device/balloon.js';
import { BalloonError } from '../errors.js';
import type { Logger } from '../log.js';
import type { DeviceSettings } from '../options/device.js';
import { planPressure, type Plan } from '../pressure/detect.js';
import { VMPRESSURE_LEVELS, type VmpressureLevel } from '../pressure/types.js';
import type { EpollLoop } from '../transport/event-loop.js';
import { VhostUserConnection } from '../transport/connection.js';
import { close } from '../transport/libc.js';
import { UnixListener } from '../transport/listener.js';
import type { PressureHub, PressureSubscription } from './pressure-hub.js';
import { type MemcgScope, scopeOf } from './memcg-sample.js';
import type { HostPressureEvent } from '../pressure/types.js';

/** Where a VM came from: decides what a reload or a restart does with it. */
export type VmOrigin = 'command-line' | 'control' | 'config-dir';

export interface VmSpec {
  vm: string;
  /** Listen here for QEMU ... */
  socketPath?: string;
  /** ... or serve this connected socket (single-VM daemons started with --fd). */
  fd?: number;
  settings: DeviceSettings;
  /** The options as they were given (long option names), for persistence and reloads. */
  options: Record<string, unknown>;
  origin: VmOrigin;
  /** The config file the options came from, if any. */
  configFile?: string;
}

export interface VmContext {
  loop: EpollLoop;
  hub: PressureHub;
  version: string;
  log: Logger;
  observeLatency: (vm: string, seconds: number) => void;
  /** After the controller heard a host pressure event: the host-wide runner decides. */
  onHostPressure?: (vm: VmService, ev: HostPressureEvent) => void;
}

export interface VmSummary {
  vm: string;
  socket: string | null;
  origin: VmOrigin;
  connected: boolean;
  mode: string;
  guestRamBytes: number;
  targetBytes: number;
  actualBytes: number;
  balloonBytes: number;
  pressure: string;
}

export class VmService extends EventEmitter<{ runtimeChanged: [RuntimeSettings]; frontendGone: [reason: string] }> {
  readonly device: BalloonDevice;
  readonly controller: Controller;
  private listener: UnixListener | null = null;
  private subscription: PressureSubscription | null = null;
  private plan: Plan;
  private stopped = false;
  private readonly log: Logger;
  /** The memory this VM shares with others (the host-wide policy's group), or null. */
  readonly scope: MemcgScope | null;

  constructor(readonly spec: VmSpec, private readonly ctx: VmContext) {
    super();
    this.log = ctx.log.child({ vm: spec.vm });
    this.plan = planPressure(spec.settings.pressure);
    this.scope = scopeOf(this.plan, spec.settings.pressure);
    this.device = new BalloonDevice({ ...spec.settings.device, log: this.log });
    this.controller = new Controller(this.device, {
      vm: spec.vm, version: ctx.version, vhostSocket: spec.socketPath ?? null, params: spec.settings.params,
      autoEnabled: spec.settings.params.enabled, pressureDescription: 'none', log: this.log,
      observeLatency: (s) => ctx.observeLatency(spec.vm, s),
      ...(this.plan.kind === 'vmpressure' ? { retunePressureLevel: (level: string) => this.retuneLevel(level) } : {}),
    });
    this.controller.on('runtimeChanged', (r) => this.emit('runtimeChanged', r));
    this.device.on('disconnected', (reason) => this.emit('frontendGone', reason));
  }

  private hostPressure(ev: HostPressureEvent): void {
    this.controller.hostPressure(ev);
    this.ctx.onHostPressure?.(this, ev);
  }

  /** Seconds between stats requests, in ms (the runner judges staleness by it). */
  get statsIntervalMs(): number {
    return this.spec.settings.device.statsIntervalMs;
  }

  get name(): string {
    return this.spec.vm;
  }

  /** Ask the guest for fresh stats now (the host-wide runner does before inflating). */
  refreshStats(): boolean {
    return this.device.requestStats();
  }

  get attached(): boolean {
    return this.device.connected;
  }

  /** Subscribe to host pressure and listen for the frontend; a BalloonError says what is wrong. */
  start(): void {
    this.subscription = this.ctx.hub.subscribe(this.plan, (ev) => this.hostPressure(ev));
    this.controller.setPressureDescription(this.subscription?.description ?? 'none');
    try {
      if (this.spec.fd !== undefined) {
        this.attach(this.spec.fd);
      } else if (this.spec.socketPath) {
        this.listener = UnixListener.listen(this.ctx.loop, this.spec.socketPath);
        this.listener.start((fd) => this.attach(fd));
      } else {
        throw new Error('a VM needs a socket path or a connected fd');
      }
    } catch (err) {
      this.subscription?.unsubscribe();
      this.subscription = null;
      throw err;
    }
    this.log.info({ socket: this.spec.socketPath ?? `fd ${this.spec.fd}`, pressure: this.subscription?.description ?? 'none' },
      'waiting for the frontend (QEMU) on the vhost-user socket');
  }

  private attach(fd: number): void {
    if (this.device.connected) {
      this.device.refuseFrontend(fd);
      close(fd);
      return;
    }
    try {
      const conn = new VhostUserConnection(this.ctx.loop, fd, this.device.connectionOptions());
      conn.onListenerError = (err, event) => this.log.error({ err, event }, 'a device event handler failed');
      this.device.attach(conn);
      this.log.info({ fd }, 'frontend connected');
    } catch (err) {
      this.log.error({ err }, 'could not set up the vhost-user connection');
      close(fd);
    }
  }

  /** balloonctl tune --level: a new subscription replaces the old one once it works. */
  private retuneLevel(level: string): string {
    const plan = this.plan;
    if (plan.kind !== 'vmpressure') throw new BalloonError('EBALLOON_CONFIG', 'this VM has no vmpressure source');
    if (!(VMPRESSURE_LEVELS as readonly string[]).includes(level)) {
      throw new BalloonError('EBALLOON_CONFIG', `level "${level}" is not a vmpressure level`, `use one of ${VMPRESSURE_LEVELS.join(', ')}`);
    }
    const next: Plan = { ...plan, level: level as VmpressureLevel };
    const sub = this.ctx.hub.subscribe(next, (ev) => this.hostPressure(ev)); // throws: the old one stays
    this.subscription?.unsubscribe();
    this.subscription = sub;
    this.plan = next;
    return sub?.description ?? 'none';
  }

  /** Stop serving: drop the frontend, close and remove the socket, leave host pressure. */
  stop(reason: string): void {
    if (this.stopped) return;
    this.stopped = true;
    this.subscription?.unsubscribe();
    this.subscription = null;
    this.device.detach(reason);
    this.listener?.close();
    this.listener = null;
  }

  summary(): VmSummary {
    const s = this.controller.status();
    return {
      vm: this.spec.vm, socket: this.spec.socketPath ?? null, origin: this.spec.origin, connected: s.connected, mode: s.mode,
      guestRamBytes: s.guestRamBytes, targetBytes: s.targetBytes, actualBytes: s.actualBytes, balloonBytes: s.balloonBytes,
      pressure: s.pressure.host.source,
    };
  }

  metrics(): MetricsSource {
    const d = this.device;
    const c = this.controller;
    return {
      counters: () => d.counters, targetPages: () => d.target, actualPages: () => d.actual, balloonPages: () => d.balloonPages,
      guestStats: () => d.latestStats?.stats ?? null, pressureEvents: () => c.pressureCounts, decisions: () => c.decisionCounts,
    };
  }
}
