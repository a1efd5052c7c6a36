// PSI triggers (Documentation/accounting/psi.rst): write "<some|full>
// <stall us> <window us>" to a memory.pressure file and wait for EPOLLPRI.
// Unprivileged triggers (no CAP_SYS_RESOURCE, as root here) need a window
// that is a multiple of 2 s.
import { BalloonError } from '../errors.js';
import { EPOLLERR, EPOLLPRI, FdWatcher } from '../transport/event-loop.js';
import { close, errno, O_CLOEXEC, O_NONBLOCK, O_RDWR, open, strerror, write } from '../transport/libc.js';
import { openError } from './vmpressure.js';
import { HostPressureEvent, PressureSource } from './types.js';

export interface PsiTrigger {
  kind: 'some' | 'full';
  stallUs: number;
  windowUs: number;
}

export const DEFAULT_PSI_TRIGGER: PsiTrigger = { kind: 'some', stallUs: 100_000, windowUs: 2_000_000 };

export function psiTriggerText(t: PsiTrigger): string {
  return `${t.kind} ${t.stallUs} ${t.windowUs}`;
}

/** Parse "some 100000 2000000" (microseconds). */
export function parsePsiTrigger(text: string): PsiTrigger {
  const m = /^(some|full)\s+(\d+)\s+(\d+)$/.exec(text.trim());
  if (!m) throw new BalloonError('EBALLOON_CONFIG', `PSI trigger "${text}" is not "<some|full> <stall us> <window us>"`, 'for example "some 100000 2000000": 100 ms stalled within 2 s');
  const t: PsiTrigger = { kind: m[1] as 'some' | 'full', stallUs: Number(m[2]), windowUs: Number(m[3]) };
  if (t.windowUs < 500_000 || t.windowUs > 10_000_000) throw new BalloonError('EBALLOON_CONFIG', `PSI window ${t.windowUs} us is outside 500000-10000000`);
  if (t.stallUs <= 0 || t.stallUs > t.windowUs) throw new BalloonError('EBALLOON_CONFIG', `PSI stall ${t.stallUs} us must be within the window (${t.windowUs} us)`);
  return t;
}

export class PsiSource implements PressureSource {
  private fd = -1;

  constructor(private readonly loop: FdWatcher, readonly file: string, readonly trigger: PsiTrigger = DEFAULT_PSI_TRIGGER) {}

  get description(): string {
    return `psi "${psiTriggerText(this.trigger)}" on ${this.file}`;
  }

  start(onEvent: (ev: HostPressureEvent) => void, onError: (err: Error) => void): void {
    const fd = Number(open(this.file, O_RDWR | O_NONBLOCK | O_CLOEXEC, 0));
    if (fd < 0) throw openError(this.file, errno());
    // The kernel replaces the last byte written with NUL: end with one.
    const text = Buffer.from(`${psiTriggerText(this.trigger)}\0`);
    if (Number(write(fd, text, text.length)) < 0) {
      const e = errno();
      close(fd);
      throw new BalloonError('EBALLOON_PRESSURE', `PSI trigger "${psiTriggerText(this.trigger)}" on ${this.file} refused: ${strerror(e)}`,
        e === 22 ? 'without CAP_SYS_RESOURCE the window must be a multiple of 2 s (e.g. "some 100000 2000000")' : 'check that PSI is enabled (psi=1) and the file is writable');
    }
    this.fd = fd;
    const level = psiTriggerText(this.trigger);
    // Only EPOLLPRI: the file always polls readable.
    this.loop.watch(fd, EPOLLPRI, (revents) => {
      if (revents & EPOLLERR) {
        onError(new Error(`${this.file} went away (cgroup removed?)`));
        return;
      }
      if (revents & EPOLLPRI) onEvent({ source: 'psi', level, count: 1, path: this.file });
    });
  }

  stop(): void {
    if (this.fd < 0) return;
    this.loop.unwatch(this.fd);
    close(this.fd);
    this.fd = -1;
  }
}
