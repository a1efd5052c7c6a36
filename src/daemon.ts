// The daemon: one event loop, one vhost-user socket, one balloon device, the
// policy controller, host pressure, the control socket and metrics.
import type { Server } from 'node:http';
import { Controller } from './control/controller.js';
import { buildRegistry, serveMetrics } from './control/metrics.js';
import { ControlServer } from './control/server.js';
import { BalloonDevice, BalloonDeviceOptions } from './device/balloon.js';
import type { Logger } from './log.js';
import type { PolicyParams } from './policy/params.js';
import { createSource, Plan } from './pressure/detect.js';
import { PressureSupervisor } from './pressure/supervisor.js';
import { VMPRESSURE_LEVELS, type VmpressureLevel } from './pressure/types.js';
import { BalloonError } from './errors.js';
import { VhostUserConnection } from './transport/connection.js';
import { EpollLoop } from './transport/event-loop.js';
import { UnixListener } from './transport/listener.js';
import { close } from './transport/libc.js';

export interface DaemonOptions {
  vm: string;
  version: string;
  /** Listen here for the frontend (QEMU) ... */
  socketPath?: string;
  /** ... or use this already-connected socket (libvirt / systemd style). */
  fd?: number;
  controlSocket: string | null;
  metricsListen: string | null;
  device: Omit<BalloonDeviceOptions, 'log'>;
  params: PolicyParams;
  autoEnabled: boolean;
  pressure: Plan;
  log: Logger;
}

export class Daemon {
  readonly loop = new EpollLoop();
  readonly device: BalloonDevice;
  readonly controller: Controller;
  private listener: UnixListener | null = null;
  private control: ControlServer | null = null;
  private metrics: Server | null = null;
  private pressure: PressureSupervisor | null = null;
  private stopped = false;
  private resolveDone!: (code: number) => void;
  /** Resolves with the exit code when the daemon stops. */
  readonly done = new Promise<number>((r) => { this.resolveDone = r; });

  constructor(private readonly opts: DaemonOptions) {
    this.device = new BalloonDevice({ ...opts.device, log: opts.log });
    this.loop.onHandlerError = (err, fd) => {
      opts.log.error({ err, fd }, 'event handler failed');
    };
    const source = createSource(opts.pressure, this.loop);
    this.controller = new Controller(this.device, {
      vm: opts.vm, version: opts.version, vhostSocket: opts.socketPath ?? null, params: opts.params,
      autoEnabled: opts.autoEnabled, pressureDescription: source?.description ?? 'none', log: opts.log,
      ...(opts.pressure.kind === 'vmpressure' ? { retunePressureLevel: (level: string) => this.retuneLevel(level) } : {}),
    });
    if (source) {
      const mustExist = opts.pressure.kind === 'vmpressure' ? opts.pressure.memcg : null;
      this.pressure = new PressureSupervisor(source, mustExist, (ev) => this.controller.hostPressure(ev), opts.log);
    }
  }

  /** balloonctl tune --level: a new vmpressure registration replaces the old one once it works. */
  private retuneLevel(level: string): string {
    const plan = this.opts.pressure;
    if (plan.kind !== 'vmpressure') throw new BalloonError('EBALLOON_CONFIG', 'this daemon has no vmpressure source');
    if (!(VMPRESSURE_LEVELS as readonly string[]).includes(level)) {
      throw new BalloonError('EBALLOON_CONFIG', `level "${level}" is not a vmpressure level`, `use one of ${VMPRESSURE_LEVELS.join(', ')}`);
    }
    const next: Plan = { ...plan, level: level as VmpressureLevel };
    const source = createSource(next, this.loop);
    if (!source) throw new BalloonError('EBALLOON_CONFIG', 'no pressure source for that plan');
    const supervisor = new PressureSupervisor(source, next.memcg, (ev) => this.controller.hostPressure(ev), this.opts.log);
    supervisor.start(); // throws with the reason; the old source keeps running then
    this.pressure?.stop();
    this.pressure = supervisor;
    this.opts.pressure = next;
    return source.description;
  }

  /** Set everything up; a BalloonError here is a clear startup failure. */
  async start(): Promise<void> {
    const { log } = this.opts;
    this.pressure?.start();
    if (this.opts.controlSocket) {
      this.control = await ControlServer.listen(this.opts.controlSocket, this.controller, log);
      log.info({ control: this.opts.controlSocket }, 'control socket ready');
    }
    if (this.opts.metricsListen) {
      this.metrics = await serveMetrics(this.opts.metricsListen, buildRegistry({
        counters: () => this.device.counters,
        targetPages: () => this.device.target,
        actualPages: () => this.device.actual,
        balloonPages: () => this.device.balloonPages,
        guestStats: () => this.device.latestStats?.stats ?? null,
        pressureEvents: () => this.controller.pressureCounts,
        decisions: () => this.controller.decisionCounts,
        pressureToConfigChange: this.controller.pressureLatency.summary,
      }, this.opts.vm));
      log.info({ metrics: this.opts.metricsListen }, 'metrics on /metrics');
    }
    if (this.opts.fd !== undefined) {
      this.attach(this.opts.fd);
      // With a passed-in socket there is nothing to accept after it closes.
      this.device.once('disconnected', () => this.stop(0));
      log.info({ fd: this.opts.fd }, 'serving the vhost-user socket passed as --fd');
      return;
    }
    if (!this.opts.socketPath) throw new Error('either socketPath or fd is required');
    this.listener = UnixListener.listen(this.loop, this.opts.socketPath);
    this.listener.start((fd) => this.attach(fd));
    log.info({ socket: this.opts.socketPath, vm: this.opts.vm }, 'waiting for the frontend (QEMU) on the vhost-user socket');
  }

  private attach(fd: number): void {
    if (this.device.connected) {
      this.device.refuseFrontend(fd);
      close(fd);
      return;
    }
    try {
      const conn = new VhostUserConnection(this.loop, fd, this.device.connectionOptions());
      this.device.attach(conn);
      this.opts.log.info({ fd }, 'frontend connected');
    } catch (err) {
      this.opts.log.error({ err }, 'could not set up the vhost-user connection');
      close(fd);
    }
  }

  stop(code = 0): void {
    if (this.stopped) return;
    this.stopped = true;
    this.pressure?.stop();
    this.device.detach('daemon stopping');
    this.listener?.close();
    this.metrics?.close();
    const control = this.control;
    this.loop.close();
    this.opts.log.info('stopped');
    void (control ? control.close() : Promise.resolve()).finally(() => this.resolveDone(code));
  }
}
