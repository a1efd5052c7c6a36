// Keeps a pressure source running. The first start() throws, so a bad path
// or missing permission is a clear startup error. After that, a vanished
// memcg or an eventfd error is logged and the source is set up again with
// exponential backoff (min, 2x min, ... up to max, reset by a success): a
// libvirt VM's memcg that is removed and created again (VM restart) is
// picked up again within `maxBackoffMs`, and a daemon whose memcg is gone
// for good costs one open() a minute.
import { existsSync } from 'node:fs';
import type { Logger } from '../log.js';
import { HostPressureEvent, PressureSource } from './types.js';

export interface Timers {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

const realTimers: Timers = {
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
};

export interface SupervisorOptions {
  /** First retry delay (default 1000 ms). */
  minBackoffMs?: number;
  /** Longest retry delay (default 60000 ms). */
  maxBackoffMs?: number;
  timers?: Timers;
  /** Called on every state change (for status and metrics). */
  onStatus?: (status: SupervisorStatus) => void;
}

export type SupervisorState = 'idle' | 'running' | 'retrying' | 'stopped';

export interface SupervisorStatus {
  state: SupervisorState;
  source: string;
  /** Times the running source was lost. */
  failures: number;
  /** Restart attempts that failed. */
  failedRetries: number;
  lastError: string | null;
  /** Delay before the pending retry, when retrying. */
  retryInMs: number | null;
}

export class PressureSupervisor {
  private timer: unknown = null;
  private backoffMs: number;
  private readonly minBackoffMs: number;
  private readonly maxBackoffMs: number;
  private readonly timers: Timers;
  private st: SupervisorState = 'idle';
  failures = 0;
  failedRetries = 0;
  lastError: string | null = null;

  constructor(
    private readonly source: PressureSource,
    /** A path whose disappearance means the source is dead (memcg dir); the sources check this themselves too. */
    private readonly mustExist: string | null,
    private readonly onEvent: (ev: HostPressureEvent) => void,
    private readonly log: Logger,
    private readonly opts: SupervisorOptions = {},
  ) {
    this.minBackoffMs = opts.minBackoffMs ?? 1000;
    this.maxBackoffMs = Math.max(this.minBackoffMs, opts.maxBackoffMs ?? 60_000);
    this.timers = opts.timers ?? realTimers;
    this.backoffMs = this.minBackoffMs;
  }

  get state(): SupervisorState {
    return this.st;
  }

  status(): SupervisorStatus {
    return {
      state: this.st, source: this.source.description, failures: this.failures, failedRetries: this.failedRetries,
      lastError: this.lastError, retryInMs: this.st === 'retrying' ? this.backoffMs : null,
    };
  }

  /** First start: errors propagate (PressureError with EBALLOON_PRESSURE_*). */
  start(): void {
    if (this.st !== 'idle') throw new Error(`pressure supervisor already ${this.st}`);
    this.startSource();
    this.setState('running');
    this.log.info({ source: this.source.description }, 'watching host memory pressure');
  }

  stop(): void {
    if (this.timer !== null) this.timers.clearTimeout(this.timer);
    this.timer = null;
    this.source.stop();
    this.setState('stopped');
  }

  private startSource(): void {
    this.source.start((ev) => this.event(ev), (err) => this.failed(err));
  }

  private setState(st: SupervisorState): void {
    this.st = st;
    this.opts.onStatus?.(this.status());
  }

  private event(ev: HostPressureEvent): void {
    if (this.st !== 'running') return;
    // Removing a v1 memcg signals its eventfds once: not pressure.
    if (this.mustExist && !existsSync(this.mustExist)) {
      this.source.stop();
      this.failed(new Error(`${this.mustExist} disappeared`));
      return;
    }
    this.onEvent(ev);
  }

  private failed(err: Error): void {
    if (this.st !== 'running') return;
    this.failures++;
    this.lastError = err.message;
    this.source.stop();
    this.backoffMs = this.minBackoffMs;
    this.log.warn({ err: err.message, source: this.source.description, retryInMs: this.backoffMs }, 'host pressure source lost; retrying');
    this.setState('retrying');
    this.schedule();
  }

  private schedule(): void {
    this.timer = this.timers.setTimeout(() => this.retry(), this.backoffMs);
  }

  private retry(): void {
    this.timer = null;
    if (this.st !== 'retrying') return;
    try {
      this.startSource();
    } catch (err) {
      this.failedRetries++;
      this.lastError = (err as Error).message.split('\n')[0] ?? String(err);
      this.backoffMs = Math.min(this.maxBackoffMs, this.backoffMs * 2);
      this.log.warn({ err: this.lastError, source: this.source.description, retryInMs: this.backoffMs }, 'host pressure source still unavailable');
      this.setState('retrying');
      this.schedule();
      return;
    }
    this.backoffMs = this.minBackoffMs;
    this.log.info({ source: this.source.description, failures: this.failures }, 'host pressure source back');
    this.setState('running');
  }
}
