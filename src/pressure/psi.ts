// PSI triggers (Documentation/accounting/psi.rst): write "<some|full>
// <stall us> <window us>" to a memory.pressure file, keep the fd open and
// wait for EPOLLPRI. The kernel fires a trigger at most once per window, so
// PSI events come pre-collapsed. Unprivileged triggers (no CAP_SYS_RESOURCE,
// which root lacks on our machines) need a window that is a multiple of 2 s.
// The kernel replaces the last byte written with NUL: the text ends in "\n".
// A removed cgroup makes the fd poll EPOLLERR.
//
// Polling a trigger consumes its event (psi_trigger_poll clears it). The
// daemon's EpollLoop in its default 'uv' mode nests its epoll set inside
// libuv's: libuv polls our epoll fd, the kernel polls the trigger to see
// whether the set is ready (consuming the event), and our epoll_wait then
// finds nothing. So next to a 'uv' loop the trigger gets its own loop in
// 'threadpool' mode, whose epoll_wait is the only poll (one pinned libuv
// threadpool thread while the source runs).
import { BalloonError } from '../errors.js';
import { EpollLoop, EPOLLERR, EPOLLHUP, EPOLLPRI, FdWatcher } from '../transport/event-loop.js';
import { close, errno, O_CLOEXEC, O_NONBLOCK, O_RDWR, open, strerror, write } from '../transport/libc.js';
import { EINVAL, EOPNOTSUPP, openError, PressureError } from './errors.js';
import { HostPressureEvent, PressureSource } from './types.js';

export interface PsiTrigger {
  kind: 'some' | 'full';
  /** Stall time within the window that fires the trigger (us). */
  stallUs: number;
  /** Tracking window (us): 500000 to 10000000; a multiple of 2000000 without CAP_SYS_RESOURCE. */
  windowUs: number;
}

export const DEFAULT_PSI_TRIGGER: PsiTrigger = { kind: 'some', stallUs: 100_000, windowUs: 2_000_000 };
export const PSI_WINDOW_MIN_US = 500_000;
export const PSI_WINDOW_MAX_US = 10_000_000;
/** Unprivileged triggers need windows in these steps. */
export const PSI_UNPRIVILEGED_WINDOW_US = 2_000_000;

export function psiTriggerText(t: PsiTrigger): string {
  return `${t.kind} ${t.stallUs} ${t.windowUs}`;
}

/** Parse "some 100000 2000000" (microseconds); EBALLOON_CONFIG naming the range when wrong. */
export function parsePsiTrigger(text: string): PsiTrigger {
  const m = /^(some|full)\s+(\d+)\s+(\d+)$/.exec(String(text).trim());
  if (!m) {
    throw new BalloonError('EBALLOON_CONFIG', `PSI trigger "${text}" is not "<some|full> <stall us> <window us>"`,
      'for example "some 100000 2000000": 100 ms stalled within 2 s');
  }
  const t: PsiTrigger = { kind: m[1] as 'some' | 'full', stallUs: Number(m[2]), windowUs: Number(m[3]) };
  if (t.windowUs < PSI_WINDOW_MIN_US || t.windowUs > PSI_WINDOW_MAX_US) {
    throw new BalloonError('EBALLOON_CONFIG', `PSI window ${t.windowUs} us is out of range`,
      `allowed: ${PSI_WINDOW_MIN_US} to ${PSI_WINDOW_MAX_US} us; without CAP_SYS_RESOURCE a multiple of ${PSI_UNPRIVILEGED_WINDOW_US}`);
  }
  if (t.stallUs <= 0 || t.stallUs > t.windowUs) {
    throw new BalloonError('EBALLOON_CONFIG', `PSI stall ${t.stallUs} us is out of range`, `allowed: 1 to the window (${t.windowUs} us)`);
  }
  return t;
}

export class PsiSource implements PressureSource {
  readonly kind = 'psi';
  private fd = -1;
  private watcher: FdWatcher | null = null;
  private own: EpollLoop | null = null;
  /** Whether the trigger waits on a private threadpool loop instead of `loop`. */
  readonly privateLoop: boolean;

  constructor(
    private readonly loop: FdWatcher,
    readonly file: string,
    readonly trigger: PsiTrigger = DEFAULT_PSI_TRIGGER,
    opts: { privateLoop?: boolean } = {},
  ) {
    this.privateLoop = opts.privateLoop ?? (loop instanceof EpollLoop && loop.mode === 'uv');
  }

  get path(): string {
    return this.file;
  }

  get running(): boolean {
    return this.fd >= 0;
  }

  get description(): string {
    return `psi "${psiTriggerText(this.trigger)}" on ${this.file}`;
  }

  start(onEvent: (ev: HostPressureEvent) => void, onError: (err: Error) => void): void {
    if (this.fd >= 0) return;
    const fd = Number(open(this.file, O_RDWR | O_NONBLOCK | O_CLOEXEC, 0));
    if (fd < 0) throw openError(this.file, errno(), 'psi');
    const level = psiTriggerText(this.trigger);
    const text = Buffer.from(`${level}\n`);
    const written = Number(write(fd, text, text.length));
    if (written !== text.length) {
      const e = errno();
      close(fd);
      if (written < 0 && e === EINVAL) {
        throw new PressureError('EBALLOON_PRESSURE_REGISTER', this.file, `PSI trigger "${level}" on ${this.file} refused: ${strerror(e)}`,
          `without CAP_SYS_RESOURCE the window must be a multiple of 2 s (e.g. "some 100000 2000000"); the stall must not exceed the window`, e);
      }
      if (written < 0 && e === EOPNOTSUPP) {
        throw new PressureError('EBALLOON_PRESSURE_CONTROLLER', this.file, `${this.file} takes no triggers: ${strerror(e)}`,
          'PSI is disabled in this kernel: boot with psi=1, or use cgroup v1 vmpressure (--pressure vmpressure)', e);
      }
      if (written < 0) throw openError(this.file, e, 'psi');
      throw new PressureError('EBALLOON_PRESSURE_REGISTER', this.file, `short write of the PSI trigger to ${this.file}`, 'report this as a bug');
    }
    this.fd = fd;
    try {
      let watcher = this.loop;
      if (this.privateLoop) {
        const own = new EpollLoop('threadpool');
        const shared = this.loop;
        if (shared instanceof EpollLoop) own.onHandlerError = (err, f) => shared.onHandlerError(err, f);
        this.own = own;
        watcher = own;
      }
      this.watcher = watcher;
      // EPOLLPRI alone: the file always polls readable.
      watcher.watch(fd, EPOLLPRI, (revents) => {
        const wokeAt = process.hrtime.bigint(); // first: the latency metric starts here
        if (this.fd !== fd) return;
        if (revents & (EPOLLERR | EPOLLHUP)) {
          this.stop();
          onError(new PressureError('EBALLOON_PRESSURE_LOST', this.file, `${this.file} went away (cgroup removed?)`, 'retrying with backoff until it is back'));
          return;
        }
        if (revents & EPOLLPRI) onEvent({ source: 'psi', level, count: 1, path: this.file, wokeAt });
      });
    } catch (err) {
      this.stop();
      throw err;
    }
  }

  stop(): void {
    if (this.fd < 0) return;
    const fd = this.fd;
    this.fd = -1;
    this.watcher?.unwatch(fd);
    this.watcher = null;
    // Closing the fd destroys the trigger.
    close(fd);
    this.own?.close();
    this.own = null;
  }
}
