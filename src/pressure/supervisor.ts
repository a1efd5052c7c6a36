// Keeps a pressure source running: a vanished memcg or an eventfd error is
// logged and the source is set up again with backoff, not a crash.
import { existsSync } from 'node:fs';
import type { Logger } from '../log.js';
import { HostPressureEvent, PressureSource } from './types.js';

export class PressureSupervisor {
  private timer: NodeJS.Timeout | null = null;
  private backoffMs: number;
  private running = false;
  private stopped = false;
  failures = 0;

  constructor(
    private readonly source: PressureSource,
    /** A path whose disappearance means the source is dead (memcg dir). */
    private readonly mustExist: string | null,
    private readonly onEvent: (ev: HostPressureEvent) => void,
    private readonly log: Logger,
    private readonly minBackoffMs = 1000,
    private readonly maxBackoffMs = 60_000,
  ) {
    this.backoffMs = minBackoffMs;
  }

  /** First start: errors propagate (a clear startup error is wanted). */
  start(): void {
    this.source.start((ev) => this.event(ev), (err) => this.failed(err));
    this.running = true;
    this.log.info({ source: this.source.description }, 'watching host memory pressure');
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    if (this.running) this.source.stop();
    this.running = false;
  }

  private event(ev: HostPressureEvent): void {
    // Removing a v1 memcg signals its eventfds once: not pressure.
    if (this.mustExist && !existsSync(this.mustExist)) {
      this.failed(new Error(`${this.mustExist} disappeared`));
      return;
    }
    this.backoffMs = this.minBackoffMs;
    this.onEvent(ev);
  }

  private failed(err: Error): void {
    if (this.stopped) return;
    this.failures++;
    if (this.running) this.source.stop();
    this.running = false;
    this.log.warn({ err: err.message, source: this.source.description, retryInMs: this.backoffMs }, 'host pressure source failed; retrying');
    this.schedule();
  }

  private schedule(): void {
    if (this.timer || this.stopped) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      try {
        this.source.start((ev) => this.event(ev), (e) => this.failed(e));
        this.running = true;
        this.backoffMs = this.minBackoffMs;
        this.log.info({ source: this.source.description }, 'host pressure source back');
      } catch (err) {
        this.backoffMs = Math.min(this.maxBackoffMs, this.backoffMs * 2);
        this.log.warn({ err: (err as Error).message, retryInMs: this.backoffMs }, 'host pressure source still unavailable');
        this.schedule();
      }
    }, this.backoffMs);
  }
}
