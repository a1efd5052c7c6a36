// One vhost-user frontend connection: owns the libvhost-user device (through
// the shim), keeps its fds in the event loop and turns the callbacks the shim
// recorded into typed events for the balloon device.
import { EventEmitter } from 'node:events';
import type { DiscardWorker } from '../device/discard.js';
import type { DeviceTransport } from '../device/transport.js';
import { discardThread } from './discard-thread.js';
import { EPOLLERR, EPOLLET, EPOLLHUP, EPOLLIN, EPOLLOUT, EPOLLPRI, FdWatcher } from './event-loop.js';
import { eventfdRead, SysError } from './libc.js';
import {
  native, VUB_DISPATCH_GONE, VUB_DISPATCH_IDLE, VUB_DISPATCH_WAIT_OUT, VUB_EVENT_SIZE, VUB_EV_KICK, VUB_EV_OVERFLOW,
  VUB_EV_PANIC, VUB_EV_QUEUE_STARTED, VUB_EV_REMOVE_WATCH, VUB_EV_SET_CONFIG, VUB_EV_SET_FEATURES, VUB_EV_SET_WATCH,
  VUB_EV_STATE_FAILED, VUB_EV_STATE_LOADED, VUB_EV_STATE_SAVE,
} from './native.js';

// libvhost-user's VU_WATCH_* are poll(2) bits.
const POLLIN = 0x1;
const POLLPRI = 0x2;
const POLLOUT = 0x4;
const POLLERR = 0x8;
const POLLHUP = 0x10;
const ENOTCONN = 107;

const pollToEpoll = (c: number): number =>
  (c & POLLIN ? EPOLLIN : 0) | (c & POLLPRI ? EPOLLPRI : 0) | (c & POLLOUT ? EPOLLOUT : 0);
const epollToPoll = (e: number): number =>
  (e & EPOLLIN ? POLLIN : 0) | (e & EPOLLPRI ? POLLPRI : 0) | (e & EPOLLOUT ? POLLOUT : 0)
  | (e & EPOLLERR ? POLLERR : 0) | (e & EPOLLHUP ? POLLHUP : 0);

export interface ConnectionEvents {
  features: [features: bigint];
  /** About to free the device: guest RAM is still mapped, the discard thread still there. */
  closing: [reason: string];
  queueStarted: [qidx: number, started: boolean];
  kick: [qidx: number];
  /** flags: VHOST_SET_CONFIG_TYPE_MASTER (0) or VHOST_SET_CONFIG_TYPE_MIGRATION (1, an incoming migration's state). */
  setConfig: [offset: number, size: number, flags: number];
  panic: [message: string];
  closed: [reason: string];
  /** Migration, source: QEMU asks for the backend's state; answer with giveState() (vhost-user device state transfer). */
  stateSave: [];
  /** Migration, destination: the source's state arrived (`bytes` long); takeState(), then answerState(). */
  stateLoaded: [bytes: number];
  /** A state transfer failed in the shim (direction 0 save, 1 load; errno). */
  stateFailed: [direction: number, errno: number];
}

/** A popped virtqueue element: its sg lists as host addresses. */
export interface Element {
  handle: bigint;
  index: number;
  out: Array<{ addr: bigint; len: number }>;
  in: Array<{ addr: bigint; len: number }>;
  /** Chain had more sg entries than we looked at. */
  truncated: boolean;
}

/** What the discard thread did since the last look (vub_bg_collect). */
export interface DiscardThreadReport {
  bytes: number;
  calls: number;
  failures: number;
  lastFailure: { gpa: number; len: number; errno: number } | null;
  /** A job is still being worked on. */
  pending: boolean;
}

const MAX_IOV = 64;
const EVENT_BATCH = 64;
/**
 * vhost-user messages handled per connection per event-loop turn, and the
 * time after which the rest wait for the next turn: a frontend's flood must
 * leave the other VMs' fds their turn. QEMU sends at most ~60 at a start,
 * most of them one at a time, waiting for a reply.
 */
const MESSAGES_PER_TURN = 32;
const MESSAGES_BUDGET_MS = 1;

export class VhostUserConnection extends EventEmitter<ConnectionEvents> implements DeviceTransport {
  private readonly shim = native();
  private dev: unknown;
  private readonly watched = new Set<number>();
  private readonly evBuf = Buffer.alloc(VUB_EVENT_SIZE * EVENT_BATCH);
  private readonly hdr = Buffer.alloc(12);
  private readonly iov = Buffer.alloc(16 * MAX_IOV);
  private readonly u64 = Buffer.alloc(24);
  private closing = false;
  private discardFd = -1;
  private discardDone: () => void = () => undefined;
  private readonly bgOut = Buffer.alloc(48);
  /** Messages may wait in the socket: an edge came, or the last round stopped early. */
  private wantDispatch = false;
  /** The frontend has not read its replies: dispatching waits for EPOLLOUT. */
  private waitingOut = false;
  private dispatchScheduled = false;
  private dispatchGate: () => boolean = () => true;
  /** A listener threw while an event of a batch was applied: the rest of the batch still runs. */
  onListenerError: (err: unknown, event: string) => void = (err) => {
    process.nextTick(() => { throw err; });
  };

  constructor(
    private readonly loop: FdWatcher,
    readonly sock: number,
    opts: { maxQueues: number; deviceFeatures: bigint; protocolFeatures: bigint; configLen: number },
  ) {
    super();
    const dev = this.shim.vub_new(sock, opts.maxQueues, opts.deviceFeatures, opts.protocolFeatures, opts.configLen);
    if (!dev) throw new Error('vu_init failed');
    this.dev = dev;
    // Watches libvhost-user removes leave the epoll set inside the shim,
    // before libvhost-user closes their fds (see vub_set_epoll_fd).
    if (loop.epollFd !== undefined) this.shim.vub_set_epoll_fd(dev, loop.epollFd);
    // Edge-triggered: a partial message left in the socket must not wake
    // the loop again and again; the rounds below keep track of what waits.
    this.loop.watch(sock, EPOLLIN | EPOLLET, (revents) => this.onSocket(revents));
  }

  /**
   * Messages are dispatched only while `gate` says so: the device closes it
   * while an element is half handled (across turns), so that no message
   * (a queue stop, a new memory table) lands in the middle of one. The device
   * calls resumeDispatch() once it opens again.
   */
  setDispatchGate(gate: () => boolean): void {
    this.dispatchGate = gate;
  }

  /** Complete messages may be waiting for their turn (not for the frontend to read replies). */
  get messagesWaiting(): boolean {
    return this.wantDispatch && !this.waitingOut;
  }

  /** The gate opened: dispatch what waits, in a turn of its own. */
  resumeDispatch(): void {
    if (this.wantDispatch && !this.waitingOut) this.scheduleDispatch();
  }

  get open(): boolean {
    return this.dev !== null && !this.closing;
  }

  features(): bigint {
    return BigInt(this.shim.vub_features(this.dev));
  }

  protocolFeatures(): bigint {
    return BigInt(this.shim.vub_protocol_features(this.dev));
  }

  configWrite(offset: number, data: Buffer): void {
    this.shim.vub_config_write(this.dev, offset, data, data.length);
  }

  configRead(offset: number, len: number): Buffer {
    const b = Buffer.alloc(len);
    this.shim.vub_config_read(this.dev, offset, b, len);
    return b;
  }

  /**
   * Tell the frontend the config changed: 0 sent, 1 queued until the backend
   * channel has room (the shim sends it from a POLLOUT watch), or -errno.
   */
  configChanged(): number {
    if (this.dev === null) return -ENOTCONN;
    const ret = Number(this.shim.vub_config_change(this.dev));
    this.drain(); // the shim may have asked for a POLLOUT watch
    return ret;
  }

  /** Migration, source: the state to send (null: none, and QEMU's check fails, so the migration does). 0 or -errno. */
  giveState(state: Buffer | null): number {
    if (this.dev === null) return -ENOTCONN;
    return Number(this.shim.vub_state_save(this.dev, state ?? Buffer.alloc(0), state?.length ?? 0, state ? 0 : 1));
  }

  /** Migration, destination: the bytes that arrived (stateLoaded), or null if they are gone. */
  takeState(bytes: number): Buffer | null {
    if (this.dev === null) return null;
    const b = Buffer.alloc(bytes);
    const n = Number(this.shim.vub_state_take(this.dev, b, bytes));
    return n === bytes ? b : null;
  }

  /** Migration, destination: tell QEMU whether the state made sense (its CHECK_DEVICE_STATE). 0 or -errno. */
  answerState(ok: boolean): number {
    if (this.dev === null) return -ENOTCONN;
    return Number(this.shim.vub_state_reply(this.dev, ok ? 0 : 1));
  }

  /** CONFIG_CHANGE_MSGs sent whole, sends that found the channel full, and whether one waits now. */
  configChangeState(): { sent: number; waits: number; pending: boolean } {
    if (this.dev === null) return { sent: 0, waits: 0, pending: false };
    const pending = this.shim.vub_config_change_pending(this.dev, this.u64) === 1;
    return { sent: Number(this.u64.readBigUInt64LE(0)), waits: Number(this.u64.readBigUInt64LE(8)), pending };
  }

  enableQueue(qidx: number, enable: boolean): void {
    this.shim.vub_queue_enable_handler(this.dev, qidx, enable ? 1 : 0);
  }

  queueStarted(qidx: number): boolean {
    return this.shim.vub_queue_started(this.dev, qidx) === 1;
  }

  /** The queue's avail index as libvhost-user keeps it (GET/SET_VRING_BASE). */
  queueLastAvail(qidx: number): number {
    return this.dev === null ? 0 : Number(this.shim.vub_queue_last_avail(this.dev, qidx));
  }

  pop(qidx: number): Element | null {
    const handle = this.shim.vub_pop(this.dev, qidx, this.hdr, this.iov, MAX_IOV);
    this.drain();
    if (!handle) return null;
    const index = this.hdr.readUInt32LE(0);
    const outNum = this.hdr.readUInt32LE(4);
    const inNum = this.hdr.readUInt32LE(8);
    const seen = Math.min(outNum + inNum, MAX_IOV);
    const out: Element['out'] = [];
    const inn: Element['in'] = [];
    for (let k = 0; k < seen; k++) {
      const sg = { addr: this.iov.readBigUInt64LE(16 * k), len: Number(this.iov.readBigUInt64LE(16 * k + 8)) };
      (k < outNum ? out : inn).push(sg);
    }
    return { handle: BigInt(handle as bigint), index, out, in: inn, truncated: outNum + inNum > MAX_IOV };
  }

  push(qidx: number, elem: Element, len: number): void {
    this.shim.vub_push(this.dev, qidx, elem.handle, len);
  }

  /** Free an element that will not be pushed (its queue is gone). */
  drop(elem: Element): void {
    this.shim.vub_drop(elem.handle);
  }

  notify(qidx: number): void {
    this.shim.vub_notify(this.dev, qidx);
  }

  /** Copy guest memory at a host address from an element. */
  read(addr: bigint, len: number, into?: Buffer): Buffer {
    const b = into && into.length >= len ? into.subarray(0, len) : Buffer.alloc(len);
    if (len > 0) this.shim.vub_read(addr, b, len);
    return b;
  }

  /** Guest RAM regions from the memory table: [gpa, size], and the page size backing each (hugetlbfs: its huge page). */
  regions(): Array<{ gpa: number; size: number; pageBytes: number }> {
    const n = this.shim.vub_nregions(this.dev) as number;
    const out: Array<{ gpa: number; size: number; pageBytes: number }> = [];
    for (let i = 0; i < n; i++) {
      if (this.shim.vub_region(this.dev, i, this.u64) === 0) {
        out.push({ gpa: Number(this.u64.readBigUInt64LE(0)), size: Number(this.u64.readBigUInt64LE(8)), pageBytes: Number(this.u64.readBigUInt64LE(16)) });
      }
    }
    return out;
  }

  /** Host memory backing guest RAM (allocated blocks of its files), or null before a memory table. */
  backedBytes(): number | null {
    if (this.dev === null) return null;
    const n = Number(this.shim.vub_backed_bytes(this.dev));
    return n < 0 ? null : n;
  }

  /** Page size backing guest RAM at a host address from an element (0: not guest RAM). */
  hostPageBytes(addr: bigint): number {
    return this.dev === null ? 0 : Number(this.shim.vub_hva_page(this.dev, addr));
  }

  /** Discard guest RAM [gpa, gpa+len): bytes discarded or -errno. */
  discard(gpa: number, len: number): number {
    return Number(this.shim.vub_discard(this.dev, gpa, len));
  }

  /** Discard guest RAM at a host address from an element: bytes or -errno. */
  discardHostRange(addr: bigint, len: number): number {
    return Number(this.shim.vub_discard_hva(this.dev, addr, len));
  }

  /** Would discardHostRange() take this range (aligned, inside one region)? */
  hostRangeInRam(addr: bigint, len: number): boolean {
    return this.dev !== null && this.shim.vub_hva_in_ram(this.dev, addr, len) === 1;
  }

  // ---- the discard thread (native/vub-discard.c) ----

  /** The discard thread as the device's BackgroundDiscard wants it (started on first use). */
  discardThread(onDone: () => void): DiscardWorker {
    this.startDiscardThread(onDone);
    return discardThread(this);
  }

  /** Start this connection's discard thread; onDone runs when a job is finished. */
  startDiscardThread(onDone: () => void): void {
    // Features are renegotiated on every device start (guest reboot): the
    // thread stays, the newest owner hears about its jobs.
    this.discardDone = onDone;
    if (this.discardFd >= 0) return;
    const fd = Number(this.shim.vub_bg_start(this.dev));
    if (fd < 0) throw new SysError('vub_bg_start', -fd);
    this.discardFd = fd;
    this.loop.watch(fd, EPOLLIN, () => {
      eventfdRead(fd);
      this.discardDone();
    });
  }

  /** Hand the thread {gpa, len} byte pairs; 0, or -EBUSY while a job runs. */
  discardSubmit(pairs: BigUint64Array): number {
    if (this.dev === null) return -ENOTCONN;
    return Number(this.shim.vub_bg_submit(this.dev, pairs, pairs.length / 2));
  }

  /** Cut [gpa, gpa+len) out of the job (waits for a chunk under way); bytes cut. */
  discardCancel(gpa: number, len: number): number {
    if (this.dev === null) return 0; // the thread was joined: it discards nothing more
    return Number(this.shim.vub_bg_cancel(this.dev, gpa, len));
  }

  /**
   * discardCancel() without waiting: -EBUSY (-16) while a chunk under way
   * overlaps the range; the thread then holds off its next chunk and writes
   * its done eventfd when this one is finished.
   */
  discardTryCancel(gpa: number, len: number): number {
    if (this.dev === null) return 0;
    return Number(this.shim.vub_bg_try_cancel(this.dev, gpa, len));
  }

  /** Forget the job (waits for a chunk under way); bytes not discarded. */
  discardDrop(): number {
    if (this.dev === null) return 0;
    return Number(this.shim.vub_bg_drop(this.dev));
  }

  /** Let a job the inflate queue's stop suspended go on (a VM pause ended). */
  discardResume(): void {
    if (this.dev !== null) this.shim.vub_bg_resume(this.dev);
  }

  /** What is left of the thread's job, as {gpa, len} byte pairs. */
  discardExport(): Array<{ gpa: number; len: number }> {
    if (this.dev === null) return [];
    let pairs = new BigUint64Array(64);
    let n = Number(this.shim.vub_bg_export(this.dev, pairs, pairs.length / 2));
    if (n > pairs.length / 2) {
      pairs = new BigUint64Array(2 * n);
      n = Number(this.shim.vub_bg_export(this.dev, pairs, n));
    }
    return Array.from({ length: n }, (_, i) => ({ gpa: Number(pairs[2 * i]), len: Number(pairs[2 * i + 1]) }));
  }

  /** Block until the job is done (shutdown, tests). */
  discardWait(): void {
    if (this.dev === null) return;
    this.shim.vub_bg_wait(this.dev);
  }

  discardCollect(): DiscardThreadReport {
    if (this.dev === null) return { bytes: 0, calls: 0, failures: 0, pending: false, lastFailure: null };
    const pending = this.shim.vub_bg_collect(this.dev, this.bgOut) === 1;
    const at = (i: number) => Number(this.bgOut.readBigUInt64LE(8 * i));
    const failures = at(2);
    return {
      bytes: at(0), calls: at(1), failures, pending,
      lastFailure: failures ? { gpa: at(3), len: at(4), errno: at(5) } : null,
    };
  }

  /** Tear the connection down (idempotent); emits 'closed' once. */
  close(reason: string): void {
    if (this.dev === null || this.closing) return;
    this.closing = true;
    try {
      this.emit('closing', reason);
    } catch (err) {
      this.onListenerError(err, 'closing');
    }
    for (const fd of this.watched) this.loop.unwatch(fd);
    this.watched.clear();
    this.loop.unwatch(this.sock);
    if (this.discardFd >= 0) this.loop.unwatch(this.discardFd);
    this.discardFd = -1;
    // vu_deinit closes the socket, kick/call fds and the backend channel.
    this.shim.vub_free(this.dev);
    this.dev = null;
    this.emit('closed', reason);
  }

  private onSocket(revents: number): void {
    if (this.dev === null) return;
    if ((revents & (EPOLLIN | EPOLLOUT)) === 0 && (revents & (EPOLLHUP | EPOLLERR)) !== 0) {
      this.close('frontend hung up');
      return;
    }
    this.wantDispatch = true;
    if (this.waitingOut) {
      if ((revents & (EPOLLOUT | EPOLLHUP | EPOLLERR)) === 0) return; // still no room for replies
      this.waitingOut = false;
      this.loop.watch(this.sock, EPOLLIN | EPOLLET, (r) => this.onSocket(r));
    }
    this.dispatchRound();
  }

  private scheduleDispatch(): void {
    if (this.dispatchScheduled) return;
    this.dispatchScheduled = true;
    setImmediate(() => {
      this.dispatchScheduled = false;
      this.dispatchRound();
    });
  }

  /**
   * Up to MESSAGES_PER_TURN complete messages (or MESSAGES_BUDGET_MS), each
   * one's events applied before the next is read. A partial message waits
   * in the socket for its next edge, a frontend that does not read its
   * replies for EPOLLOUT, the rest of a flood for the next turn.
   */
  private dispatchRound(): void {
    const t0 = performance.now();
    for (let i = 0; i < MESSAGES_PER_TURN; i++) {
      if (this.dev === null || !this.wantDispatch || this.waitingOut || !this.dispatchGate()) return;
      const r = this.shim.vub_dispatch_ready(this.dev) as number;
      this.drain();
      if (this.dev === null) return;
      if (r === VUB_DISPATCH_GONE) {
        this.close('frontend closed the connection or the device broke');
        return;
      }
      if (r === VUB_DISPATCH_IDLE) {
        this.wantDispatch = false;
        return;
      }
      if (r === VUB_DISPATCH_WAIT_OUT) {
        this.waitingOut = true;
        this.loop.watch(this.sock, EPOLLIN | EPOLLOUT | EPOLLET, (rv) => this.onSocket(rv));
        return;
      }
      if (performance.now() - t0 >= MESSAGES_BUDGET_MS) break;
    }
    this.scheduleDispatch();
  }

  private onWatch(fd: number, revents: number): void {
    if (this.dev === null) return;
    this.shim.vub_fire_watch(this.dev, fd, epollToPoll(revents));
    this.drain();
  }

  /** Apply what libvhost-user asked for during the last call. */
  drain(): void {
    while (this.dev !== null) {
      const n = this.shim.vub_next_events(this.dev, this.evBuf, EVENT_BATCH) as number;
      if (n <= 0) return;
      for (let i = 0; i < n; i++) {
        const off = i * VUB_EVENT_SIZE;
        const kind = this.evBuf.readInt32LE(off);
        const a = this.evBuf.readInt32LE(off + 4);
        const b = this.evBuf.readInt32LE(off + 8);
        const u = this.evBuf.readBigUInt64LE(off + 16);
        try {
          this.apply(kind, a, b, u);
        } catch (err) {
          // One listener's bug must not lose the rest of what libvhost-user did.
          this.onListenerError(err, `event ${kind}`);
        }
        if (this.dev === null) return;
      }
    }
  }

  private apply(kind: number, a: number, b: number, u: bigint): void {
    switch (kind) {
      case VUB_EV_SET_WATCH:
        this.watched.add(a);
        this.loop.watch(a, pollToEpoll(b), (revents) => this.onWatch(a, revents));
        break;
      case VUB_EV_REMOVE_WATCH:
        // The shim has taken it out of the epoll set already.
        this.watched.delete(a);
        this.loop.forget(a);
        break;
      case VUB_EV_QUEUE_STARTED:
        this.emit('queueStarted', a, b === 1);
        break;
      case VUB_EV_KICK:
        this.emit('kick', a);
        break;
      case VUB_EV_SET_FEATURES:
        this.emit('features', u);
        break;
      case VUB_EV_SET_CONFIG:
        this.emit('setConfig', a, b, Number(u));
        break;
      case VUB_EV_PANIC:
        this.emit('panic', String(this.shim.vub_last_panic(this.dev)));
        break;
      case VUB_EV_OVERFLOW:
        this.emit('panic', `lost ${a} libvhost-user events`);
        break;
      case VUB_EV_STATE_SAVE:
        // QEMU waits on the pipe for this: never leave it without an answer.
        if (this.listenerCount('stateSave') === 0) this.giveState(null);
        else this.emit('stateSave');
        break;
      case VUB_EV_STATE_LOADED:
        if (this.listenerCount('stateLoaded') === 0) this.answerState(false);
        else this.emit('stateLoaded', Number(u));
        break;
      case VUB_EV_STATE_FAILED:
        this.emit('stateFailed', a, b);
        break;
      default:
        break;
    }
  }
}
