// cgroup v1 memcg vmpressure (Documentation/admin-guide/cgroup-v1/memory.rst,
// "Memory Pressure"): an eventfd registered through cgroup.event_control with
// "<event_fd> <fd of memory.pressure_level> <level>[,<mode>]". Each event
// bumps the eventfd counter; one read returns and clears the sum, so one
// wake-up may carry several events (`count`).
//
// Removing the memcg unregisters the listener and signals the eventfd once.
// That signal is not pressure: before reporting, we check that
// memory.pressure_level still is the file we registered on (same inode), so
// a removed memcg (or one removed and created again under the same name)
// ends the source with EBALLOON_PRESSURE_LOST instead of a false event.
import { fstatSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { BalloonError } from '../errors.js';
import { EPOLLERR, EPOLLHUP, EPOLLIN, FdWatcher } from '../transport/event-loop.js';
import {
  close, EFD_CLOEXEC, EFD_NONBLOCK, errno, eventfd, eventfdRead, O_CLOEXEC, O_RDONLY, O_WRONLY, open, strerror, write,
} from '../transport/libc.js';
import { EINVAL, openError, PressureError } from './errors.js';
import { HostPressureEvent, PressureSource, VMPRESSURE_LEVELS, VMPRESSURE_MODES, VmpressureLevel, VmpressureMode } from './types.js';

export function vmpressureLine(efd: number, lfd: number, level: VmpressureLevel, mode?: VmpressureMode): string {
  return `${efd} ${lfd} ${level}${mode ? `,${mode}` : ''}`;
}

export class VmpressureSource implements PressureSource {
  readonly kind = 'vmpressure';
  private fds: { efd: number; lfd: number; ino: number; dev: number } | null = null;

  constructor(
    private readonly loop: FdWatcher,
    readonly memcg: string,
    readonly level: VmpressureLevel = 'low',
    readonly mode?: VmpressureMode,
  ) {
    if (!VMPRESSURE_LEVELS.includes(level)) {
      throw new BalloonError('EBALLOON_CONFIG', `vmpressure level ${JSON.stringify(level)} is not allowed`, `allowed: ${VMPRESSURE_LEVELS.join(', ')}`);
    }
    if (mode !== undefined && !VMPRESSURE_MODES.includes(mode)) {
      throw new BalloonError('EBALLOON_CONFIG', `vmpressure mode ${JSON.stringify(mode)} is not allowed`, `allowed: ${VMPRESSURE_MODES.join(', ')} (or none)`);
    }
  }

  get path(): string {
    return this.memcg;
  }

  get running(): boolean {
    return this.fds !== null;
  }

  get description(): string {
    return `vmpressure ${this.level}${this.mode ? `,${this.mode}` : ''} on ${this.memcg}`;
  }

  private get levelPath(): string {
    return join(this.memcg, 'memory.pressure_level');
  }

  start(onEvent: (ev: HostPressureEvent) => void, onError: (err: Error) => void): void {
    if (this.fds) return;
    const levelPath = this.levelPath;
    const controlPath = join(this.memcg, 'cgroup.event_control');
    const lfd = Number(open(levelPath, O_RDONLY | O_CLOEXEC, 0));
    if (lfd < 0) throw openError(levelPath, errno(), 'memcg');
    const cfd = Number(open(controlPath, O_WRONLY | O_CLOEXEC, 0));
    if (cfd < 0) {
      const e = errno();
      close(lfd);
      throw openError(controlPath, e, 'memcg');
    }
    const efd = Number(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (efd < 0) {
      const e = errno();
      close(cfd);
      close(lfd);
      throw new PressureError('EBALLOON_PRESSURE_REGISTER', this.memcg, `eventfd() failed: ${strerror(e)}`, 'raise the open-file limit (ulimit -n)', e);
    }
    const line = Buffer.from(vmpressureLine(efd, lfd, this.level, this.mode));
    const written = Number(write(cfd, line, line.length));
    const e = errno();
    // The kernel keeps its own references: the control file is done with.
    close(cfd);
    if (written !== line.length) {
      close(efd);
      close(lfd);
      if (written < 0 && e !== EINVAL) throw openError(controlPath, e, 'memcg');
      throw new PressureError('EBALLOON_PRESSURE_REGISTER', this.memcg,
        `registering "${line.toString()}" in ${controlPath} failed: ${written < 0 ? strerror(e) : 'short write'}`,
        `check --pressure-level (${VMPRESSURE_LEVELS.join('|')}) and --pressure-mode (${VMPRESSURE_MODES.join('|')}); the directory must be a cgroup v1 memory cgroup`, e);
    }
    const st = fstatSync(lfd);
    this.fds = { efd, lfd, ino: st.ino, dev: st.dev };
    try {
      this.loop.watch(efd, EPOLLIN, (revents) => this.ready(efd, revents, onEvent, onError));
    } catch (err) {
      this.stop();
      throw err;
    }
  }

  /** Is memory.pressure_level still the file we registered on? */
  private same(): boolean {
    if (!this.fds) return false;
    try {
      const st = statSync(this.levelPath);
      return st.ino === this.fds.ino && st.dev === this.fds.dev;
    } catch {
      return false;
    }
  }

  private ready(efd: number, revents: number, onEvent: (ev: HostPressureEvent) => void, onError: (err: Error) => void): void {
    const wokeAt = process.hrtime.bigint(); // first: the latency metric starts here
    if (!this.fds || this.fds.efd !== efd) return;
    let count: bigint;
    try {
      count = eventfdRead(efd);
      if (revents & (EPOLLERR | EPOLLHUP)) throw new Error(`eventfd reported ${revents & EPOLLERR ? 'EPOLLERR' : 'EPOLLHUP'}`);
    } catch (err) {
      this.fail(onError, `reading the vmpressure eventfd for ${this.memcg} failed: ${(err as Error).message}`);
      return;
    }
    if (count === 0n) return; // spurious wake-up
    if (!this.same()) {
      this.fail(onError, `memcg ${this.memcg} was removed (or replaced): its listener is gone`);
      return;
    }
    onEvent({ source: 'vmpressure', level: this.level, count: Number(count), path: this.memcg, wokeAt });
  }

  private fail(onError: (err: Error) => void, message: string): void {
    this.stop();
    onError(new PressureError('EBALLOON_PRESSURE_LOST', this.memcg, message, 'retrying with backoff until the memcg is back'));
  }

  stop(): void {
    if (!this.fds) return;
    const { efd, lfd } = this.fds;
    this.fds = null;
    this.loop.unwatch(efd);
    // Closing the eventfd unregisters the listener in the kernel.
    close(efd);
    close(lfd);
  }
}
