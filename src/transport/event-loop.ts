// The daemon's fd event loop. One epoll set holds every fd the daemon waits
// on (vhost-user socket, kick eventfds, memcg/PSI eventfds, the listening
// socket), each with its own event mask (PSI triggers need EPOLLPRI alone).
// Handlers always run on the main thread; an idle daemon costs no CPU.
//
// Two ways to wait, same epoll set:
// - 'uv' (default): the epoll fd itself sits in libuv's loop (koffi.node.poll,
//   a uv_poll handle); when it turns readable we collect events with a
//   non-blocking epoll_wait. No thread hop, so a shorter tail.
// - 'threadpool': a blocking epoll_wait runs as an async koffi call on the
//   libuv threadpool and reports back to the main thread. It pins a pool
//   thread and its wake-up tail was 1.5-3x longer (bench/ffi-overhead.ts),
//   so it is kept for comparison. A private eventfd wakes it for shutdown.
import koffi from 'koffi';
import { check, close, eventfd, eventfdRead, eventfdWrite, EFD_CLOEXEC, EFD_NONBLOCK, libc } from './libc.js';

const lib = libc();
const epoll_create1 = lib.func('int epoll_create1(int flags)');
const epoll_ctl = lib.func('int epoll_ctl(int epfd, int op, int fd, void *event)');
const epoll_wait = lib.func('int epoll_wait(int epfd, _Out_ void *events, int maxevents, int timeout)');

export const EPOLLIN = 0x001;
export const EPOLLPRI = 0x002;
export const EPOLLOUT = 0x004;
export const EPOLLERR = 0x008;
export const EPOLLHUP = 0x010;
export const EPOLLRDHUP = 0x2000;
/** Edge-triggered: reported once per change, not while the condition lasts. */
export const EPOLLET = 0x80000000;
const EPOLL_CTL_ADD = 1;
const EPOLL_CTL_DEL = 2;
const EPOLL_CTL_MOD = 3;
const EPOLL_CLOEXEC = 0o2000000;
const ENOENT = 2;
const EEXIST = 17;
const EBADF = 9;
// struct epoll_event is packed on x86_64: u32 events; u64 data.
const EVENT_SIZE = 12;
const MAX_EVENTS = 64;

export type ReadyHandler = (revents: number) => void;
export type WaitMode = 'uv' | 'threadpool';

/** What pressure sources and the transport need from the loop. */
export interface FdWatcher {
  /** Watch fd for `events` (EPOLLIN, EPOLLPRI, ...); replaces a previous watch. */
  watch(fd: number, events: number, onReady: ReadyHandler): void;
  /**
   * Stop watching fd; call it before closing the fd. An fd closed first may
   * leave its registration behind (when another process holds the same open
   * file, as QEMU does with kick eventfds): that is reported as an error.
   */
  unwatch(fd: number): void;
  /** Drop the handler of an fd someone else already took out of the epoll set. */
  forget(fd: number): void;
  /** The epoll fd, for native code that removes registrations itself. */
  readonly epollFd?: number;
}

export class EpollLoop implements FdWatcher {
  private readonly epfd: number;
  private readonly wakeFd: number;
  private readonly handlers = new Map<number, ReadyHandler>();
  private readonly reportedStale = new Set<number>();
  private readonly events = Buffer.alloc(EVENT_SIZE * MAX_EVENTS);
  private readonly ctlBuf = Buffer.alloc(EVENT_SIZE);
  private waiting = false;
  private closed = false;
  private readonly poll: ReturnType<typeof koffi.node.poll> | null = null;
  /** Errors thrown by handlers go here instead of killing the loop. */
  onHandlerError: (err: unknown, fd: number) => void = (err) => {
    process.nextTick(() => { throw err; });
  };

  constructor(readonly mode: WaitMode = (process.env.VUB_EVENT_LOOP as WaitMode | undefined) ?? 'uv') {
    this.epfd = check('epoll_create1', epoll_create1(EPOLL_CLOEXEC));
    this.wakeFd = check('eventfd', eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    this.ctl(EPOLL_CTL_ADD, this.wakeFd, EPOLLIN);
    if (mode === 'uv') {
      this.poll = koffi.node.poll(this.epfd, { readable: true }, () => this.collect());
      this.poll.unref();
    }
  }

  get watchedCount(): number {
    return this.handlers.size;
  }

  get epollFd(): number {
    return this.epfd;
  }

  watch(fd: number, events: number, onReady: ReadyHandler): void {
    if (this.closed) throw new Error('event loop is closed');
    const known = this.handlers.has(fd);
    this.handlers.set(fd, onReady);
    let ret = this.ctl(known ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, fd, events);
    // A stale registration (fd number reused after close) or a vanished one.
    if (ret < 0 && koffi.errno() === EEXIST) ret = this.ctl(EPOLL_CTL_MOD, fd, events);
    else if (ret < 0 && koffi.errno() === ENOENT) ret = this.ctl(EPOLL_CTL_ADD, fd, events);
    if (ret < 0) {
      this.handlers.delete(fd);
      check(`epoll_ctl(watch fd ${fd})`, ret);
    }
    this.arm();
  }

  unwatch(fd: number): void {
    if (!this.handlers.delete(fd)) return;
    const ret = this.ctl(EPOLL_CTL_DEL, fd, 0);
    const err = ret < 0 ? koffi.errno() : 0;
    this.released();
    if (err === EBADF) {
      // Closed before unwatch: epoll may still hold it (the open file lives
      // on in another process) and keep reporting it. A bug in the caller.
      this.onHandlerError(new Error(`fd ${fd} was closed before it was unwatched: its epoll registration may outlive it`), fd);
    } else if (err !== 0 && err !== ENOENT) {
      check(`epoll_ctl(unwatch fd ${fd})`, ret);
    }
  }

  forget(fd: number): void {
    if (this.handlers.delete(fd)) this.released();
  }

  /**
   * A ready fd nobody watches: take it out if it is still the same open
   * file; if epoll cannot (the fd was closed while another process holds the
   * file), say so once, since it will keep waking the loop.
   */
  private stale(fd: number): void {
    if (this.ctl(EPOLL_CTL_DEL, fd, 0) === 0 || this.reportedStale.has(fd)) return;
    this.reportedStale.add(fd);
    this.onHandlerError(new Error(`epoll reports fd ${fd}, which nobody watches and which cannot be removed (closed before unwatch)`), fd);
  }

  private released(): void {
    if (this.handlers.size === 0) {
      this.wake();
      this.arm();
    }
  }

  /** Stop waiting and release the epoll set; pending handlers are dropped. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.handlers.clear();
    if (this.poll) {
      this.poll.close();
      this.release();
    } else if (this.waiting) {
      // The threadpool wait returns on the wake event and closes the fds.
      this.wake();
    } else {
      this.release();
    }
  }

  private release(): void {
    close(this.wakeFd);
    close(this.epfd);
  }

  private ctl(op: number, fd: number, events: number): number {
    this.ctlBuf.writeUInt32LE(events >>> 0, 0);
    this.ctlBuf.writeBigUInt64LE(BigInt(fd), 4);
    return Number(epoll_ctl(this.epfd, op, fd, this.ctlBuf));
  }

  private wake(): void {
    if (this.waiting) eventfdWrite(this.wakeFd);
  }

  /** 'uv' mode: the epoll fd is readable; take what is ready now. */
  private collect(): void {
    if (this.closed) return;
    const n = Number(epoll_wait(this.epfd, this.events, MAX_EVENTS, 0));
    if (n > 0) this.dispatch(n);
  }

  /** Keep the process alive only while something is watched. */
  private arm(): void {
    if (this.poll) {
      if (this.handlers.size > 0) this.poll.ref();
      else this.poll.unref();
      return;
    }
    if (this.waiting || this.closed || this.handlers.size === 0) return;
    this.waiting = true;
    epoll_wait.async(this.epfd, this.events, MAX_EVENTS, -1, (err: unknown, n: number) => {
      this.waiting = false;
      if (this.closed) {
        this.release();
        return;
      }
      if (err) {
        this.onHandlerError(err, -1);
      } else if (n > 0) {
        this.dispatch(n);
      }
      this.arm();
    });
  }

  private dispatch(n: number): void {
    // Copy first: handlers may re-enter watch/unwatch and the next wait
    // reuses the buffer.
    const ready: Array<[number, number]> = [];
    for (let i = 0; i < n; i++) {
      const revents = this.events.readUInt32LE(i * EVENT_SIZE);
      const fd = Number(this.events.readBigUInt64LE(i * EVENT_SIZE + 4));
      ready.push([fd, revents]);
    }
    for (const [fd, revents] of ready) {
      if (fd === this.wakeFd) {
        eventfdRead(this.wakeFd);
        continue;
      }
      const handler = this.handlers.get(fd);
      if (!handler) {
        this.stale(fd);
        continue;
      }
      try {
        handler(revents);
      } catch (err) {
        this.onHandlerError(err, fd);
      }
    }
  }
}
