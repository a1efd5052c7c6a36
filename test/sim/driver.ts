// A simulated guest: QEMU's vhost-user side (vhost-setup.ts) plus a
// virtio-balloon driver that behaves like Linux 6.1's virtio_balloon:
// - tell_host(): one buffer of up to 256 le32 PFNs, wait for its ack;
// - fill_balloon()/leak_balloon(): one array (256 pages) at a time, each
//   followed by update_balloon_size() (a config write of `actual`);
// - update_balloon_size_func(): re-read num_pages and step until it matches;
// - stats: one buffer primed in init_vqs(), refilled whenever the device
//   returns it (stats_handle_request());
// - virtballoon_free_page_report(): device-writable buffers naming free ranges;
// - virtio_balloon_oom_notify(): leak 256 pages under OOM (DEFLATE_ON_OOM);
// - virtballoon_migratepage(): compaction moves one ballooned page.
import { performance } from 'node:perf_hooks';
import { BalloonPages } from './balloon-pages.js';
import {
  BackendChannel, Frontend, VHOST_USER, VHOST_USER_PROTOCOL_F, VHOST_USER_SLAVE_CONFIG_CHANGE_MSG, VhostUserError,
} from './frontend.js';
import { GuestMemory, Layout, PAGE } from './guest-memory.js';
import {
  CONFIG_OFFSET_ACTUAL, CONFIG_SIZE, DEFAULT_MESSAGE_VQ_BIT, LINUX_6_1_FEATURES, PAGE_REPORTING_CAPACITY, Role, SimConfig,
  StatEntries,
  VIRTIO_BALLOON_ARRAY_PFNS_MAX, VIRTIO_BALLOON_F_DEFLATE_ON_OOM, VIRTIO_BALLOON_F_STATS_VQ, VIRTIO_BALLOON_OOM_NR_PAGES,
  VIRTIO_F_VERSION_1, VIRTIO_RING_F_EVENT_IDX, VIRTIO_RING_F_INDIRECT_DESC, bit, decodeConfigSpace, queueOrder,
} from './linux.js';
import { Segment, SplitRing } from './split-ring.js';
import { GuestVmCounters, StatsQueue, newGuestVm, vmStats } from './stats-queue.js';
import { close as closeFd } from './sys.js';
import { type DirtyLog, MemTable, backendInit, devStart, devStop, hasProto, startLogging } from './vhost-setup.js';

export const PFNS_PER_BUFFER = VIRTIO_BALLOON_ARRAY_PFNS_MAX;

export interface SimGuestOptions {
  socketPath: string;
  /** Guest RAM (the memfd size). Default 256 MiB. */
  ramBytes?: number;
  /** Memory table shape: one region, or QEMU's q35 layout with holes. Default 'flat'. */
  layout?: Layout;
  /** Top of RAM kept for rings and buffers. Default 8 MiB. */
  reservedBytes?: number;
  /** RAM on a hugetlbfs memfd of this page size (2 MiB: the host needs free huge pages). Default: 4 KiB shmem. */
  hugePageBytes?: number;
  /** Driver features (ANDed with the offer). Default: Linux 6.1's, plus the message queue bit. */
  accept?: bigint;
  /** Feature bit of the message queue; null: a stock driver without one. Default 23. */
  messageVqBit?: number | null;
  /** Protocol features the frontend may use. Default: QEMU 7.2's mask. */
  protocolMask?: bigint;
  /** Virtqueue size (QEMU's virtio-balloon uses 128). */
  queueSize?: number;
  /** Stats buffer contents, tag -> value; called at every (re)fill. Default: linuxStats() of a small model. */
  stats?: () => StatEntries;
  /** Refill the stats buffer whenever the device returns it, like the driver's work item. Default false. */
  autoStats?: boolean;
  /** Stop after the realize-time handshake (raw protocol tests). */
  noQueues?: boolean;
}

export class SimGuest {
  readonly mem: GuestMemory;
  fe: Frontend;
  backend: BackendChannel;
  readonly pages: BalloonPages;
  offered = 0n;
  negotiated = 0n;
  protocol = 0n;
  roles: Role[] = [];
  readonly rings = new Map<Role, SplitRing>();
  memTable!: MemTable;
  /** The guest's memory figures the default stats report (tests may change them). */
  readonly vm: GuestVmCounters;
  private readonly pfnBuf: number;
  private msgBuf: { gpa: number; cap: number } | undefined;
  /** The stats queue's driver side (when STATS_VQ is negotiated). */
  statsQueue: StatsQueue | undefined;
  private lock: Promise<unknown> = Promise.resolve();
  private stopped = false;
  private theirEnd: number | null;
  /** `actual` as the guest last wrote it: QEMU's copy in its device config. */
  lastActual = 0;

  private constructor(readonly opts: SimGuestOptions) {
    this.mem = new GuestMemory(opts.ramBytes ?? 256 << 20, opts.reservedBytes ?? 8 << 20, opts.layout ?? 'flat', opts.hugePageBytes ?? 0);
    this.pages = new BalloonPages(this.mem);
    this.vm = newGuestVm(this.mem.size);
    try {
      this.fe = Frontend.connect(opts.socketPath);
    } catch (err) {
      this.mem.close();
      throw err;
    }
    const { channel, theirEnd } = BackendChannel.pair();
    this.backend = channel;
    this.theirEnd = theirEnd;
    this.pfnBuf = this.mem.alloc(4 * PFNS_PER_BUFFER, 64);
  }

  /** Connect, negotiate and (unless noQueues) start every queue, like QEMU + the driver's probe. */
  static async start(opts: SimGuestOptions): Promise<SimGuest> {
    const g = new SimGuest(opts);
    try {
      g.realize();
      if (!opts.noQueues) g.probe();
    } catch (err) {
      g.close();
      throw err;
    }
    return g;
  }

  get messageVqBit(): number | null {
    return this.opts.messageVqBit === undefined ? DEFAULT_MESSAGE_VQ_BIT : this.opts.messageVqBit;
  }

  /** Pages currently in the balloon, in the order they went in. */
  get balloon(): number[] {
    return this.pages.stack;
  }

  private realize(): void {
    const info = backendInit(this.fe, this.theirEnd, this.opts.protocolMask);
    this.closeTheirEnd();
    this.offered = info.offered;
    this.protocol = info.protocol;
    this.memTable = new MemTable(this.fe, this.mem, this.protocol);
    // The device model reads its config at realize (vhost_dev_get_config()).
    if (hasProto(this.protocol, VHOST_USER_PROTOCOL_F.CONFIG)) this.readConfig();
    const mq = this.messageVqBit;
    const accept = this.opts.accept ?? (LINUX_6_1_FEATURES | (mq === null ? 0n : bit(mq)));
    this.negotiated = this.offered & accept & ((1n << 64n) - 1n);
    if (!(this.negotiated & bit(VIRTIO_F_VERSION_1))) throw new VhostUserError('device does not offer VIRTIO_F_VERSION_1');
    this.roles = queueOrder(this.negotiated, mq);
  }

  /** After start({ noQueues: true }): the driver's probe (an incoming migration's destination starts here). */
  startQueues(): void {
    this.probe();
  }

  /** Driver probe: rings (init_vqs), DRIVER_OK (QEMU starts vhost), prime stats. */
  private probe(): void {
    const opts = { eventIdx: this.has(VIRTIO_RING_F_EVENT_IDX), indirect: this.has(VIRTIO_RING_F_INDIRECT_DESC) };
    this.rings.clear();
    this.roles.forEach((role, index) => this.rings.set(role, new SplitRing(this.mem, index, this.opts.queueSize ?? 128, opts)));
    devStart(this.fe, { features: this.negotiated, offered: this.offered, memTable: this.memTable, mem: this.mem, rings: [...this.rings.values()] });
    // QEMU finishes vhost_dev_start() before the guest runs on; a request
    // with a reply makes sure the backend has applied every setup message.
    this.fe.getU64(VHOST_USER.GET_FEATURES);
    this.statsQueue?.close();
    this.statsQueue = this.has(VIRTIO_BALLOON_F_STATS_VQ)
      ? new StatsQueue(this.mem, this.ring('stats'), () => this.statsEntries(), this.opts.autoStats ?? false)
      : undefined;
  }

  has(feature: number): boolean {
    return (this.negotiated & bit(feature)) !== 0n;
  }

  ring(role: Role): SplitRing {
    const r = this.rings.get(role);
    if (!r) throw new Error(`queue ${role} not negotiated (queues: ${this.roles.join(', ')})`);
    return r;
  }

  /** Interrupts the device should have raised but did not (all queues). */
  get lostInterrupts(): number {
    return [...this.rings.values()].reduce((n, r) => n + r.counters.lostInterrupts, 0);
  }

  // ---- config space -------------------------------------------------------

  readConfig(): SimConfig {
    const p = Buffer.alloc(12 + CONFIG_SIZE);
    p.writeUInt32LE(0, 0);
    p.writeUInt32LE(CONFIG_SIZE, 4);
    const r = this.fe.call(VHOST_USER.GET_CONFIG, p);
    if (r.payload.length !== 12 + CONFIG_SIZE) throw new VhostUserError(`GET_CONFIG reply of ${r.payload.length} bytes (0: the device refused)`);
    return decodeConfigSpace(r.payload.subarray(12));
  }

  /** update_balloon_size(): the driver writes `actual`; QEMU forwards it as SET_CONFIG (flags 1: MIGRATION, from post_load). */
  writeActual(pages = this.pages.size, flags = 0): void {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(pages >>> 0);
    this.setConfig(CONFIG_OFFSET_ACTUAL, b, flags);
  }

  /** SET_CONFIG {offset, size, flags (VHOST_SET_CONFIG_TYPE_MASTER 0, _MIGRATION 1), data}. */
  setConfig(offset: number, data: Buffer, flags = 0): void {
    if (offset === CONFIG_OFFSET_ACTUAL && data.length >= 4) this.lastActual = data.readUInt32LE(0);
    const p = Buffer.alloc(12 + data.length);
    p.writeUInt32LE(offset, 0);
    p.writeUInt32LE(data.length, 4);
    p.writeUInt32LE(flags, 8);
    data.copy(p, 12);
    this.fe.acked(VHOST_USER.SET_CONFIG, p);
  }

  /** Wait for VHOST_USER_SLAVE_CONFIG_CHANGE_MSG; false on timeout. */
  async waitConfigChange(timeoutMs = 2000): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const left = deadline - Date.now();
      if (left <= 0) return false;
      const m = await this.backend.next(left);
      if (!m) return false;
      if (m.request === VHOST_USER_SLAVE_CONFIG_CHANGE_MSG) return true;
    }
  }

  // ---- inflate / deflate --------------------------------------------------

  /** tell_host() for each 256-PFN slice of `pfns`: one buffer, kick, wait for its ack. */
  async tellHost(role: 'inflate' | 'deflate', pfns: ArrayLike<number>, onBatch?: (ms: number) => void): Promise<void> {
    const ring = this.ring(role);
    const buf = this.mem.slice(this.pfnBuf, 4 * PFNS_PER_BUFFER);
    for (let i = 0; i < pfns.length; i += PFNS_PER_BUFFER) {
      const n = Math.min(PFNS_PER_BUFFER, pfns.length - i);
      for (let k = 0; k < n; k++) buf.writeUInt32LE(pfns[i + k]! >>> 0, 4 * k);
      const t0 = performance.now();
      const head = ring.add([{ gpa: this.pfnBuf, len: 4 * n }]);
      ring.kick();
      await ring.waitFor(head);
      onBatch?.(performance.now() - t0);
    }
  }

  /** fill_balloon(): at most one array (256 pages). Returns the pages ballooned. */
  fillBalloon(num: number, onBatch?: (ms: number) => void): Promise<number[]> {
    return this.serial(async () => {
      const pfns = this.pages.take(Math.min(num, PFNS_PER_BUFFER));
      if (pfns.length) await this.tellHost('inflate', pfns, onBatch);
      return pfns;
    });
  }

  /** leak_balloon(): at most one array, most recent pages first; tell the host before reuse. */
  leakBalloon(num: number, onBatch?: (ms: number) => void): Promise<number[]> {
    return this.serial(async () => {
      const pfns = this.pages.release(Math.min(num, PFNS_PER_BUFFER));
      if (pfns.length) await this.tellHost('deflate', pfns, onBatch);
      return pfns;
    });
  }

  /**
   * Inflate by `pages`: fill_balloon() + update_balloon_size() per array, as
   * update_balloon_size_func() does. With `pfns`, those PFNs are ballooned
   * instead of free pages; with updateSize 'end', `actual` is written once.
   */
  inflate(pages: number, opts: { pfns?: number[]; onBatch?: (ms: number) => void; updateSize?: 'batch' | 'end' } = {}): Promise<number[]> {
    const given = opts.pfns;
    const step = given
      ? (done: number) => this.serial(async () => {
        const slice = given.slice(done, done + PFNS_PER_BUFFER);
        this.pages.add(slice);
        await this.tellHost('inflate', slice, opts.onBatch);
        return slice;
      })
      : (done: number) => this.fillBalloon(pages - done, opts.onBatch);
    return this.resize(given ? given.length : pages, step, opts.updateSize);
  }

  /** Deflate by `pages` (leak_balloon() + update_balloon_size() per array). */
  deflate(pages: number, opts: { onBatch?: (ms: number) => void; updateSize?: 'batch' | 'end' } = {}): Promise<number[]> {
    return this.resize(pages, (done) => this.leakBalloon(pages - done, opts.onBatch), opts.updateSize);
  }

  private async resize(total: number, step: (done: number) => Promise<number[]>, updateSize: 'batch' | 'end' = 'batch'): Promise<number[]> {
    const out: number[] = [];
    while (out.length < total) {
      const got = await step(out.length);
      if (got.length === 0) break; // "Out of puff!" or an empty balloon
      for (const p of got) out.push(p);
      if (updateSize === 'batch') this.writeActual();
    }
    if (updateSize === 'end') this.writeActual();
    return out;
  }

  /** virtio_balloon_oom_notify(): the guest is out of memory and takes 256 pages back. */
  async oomNotify(): Promise<number[]> {
    if (!this.has(VIRTIO_BALLOON_F_DEFLATE_ON_OOM)) return [];
    const got = await this.leakBalloon(VIRTIO_BALLOON_OOM_NR_PAGES);
    this.writeActual();
    return got;
  }

  /**
   * virtballoon_migratepage(): compaction moves a ballooned page. One-PFN
   * tell_host() on inflate for the new page, then on deflate for the old;
   * `actual` does not change.
   */
  migratePage(from = this.pages.stack[0]): Promise<{ from: number; to: number } | undefined> {
    return this.serial(async () => {
      if (from === undefined || !this.pages.has(from)) return undefined;
      const [to] = this.pages.take(1);
      if (to === undefined) return undefined;
      await this.tellHost('inflate', [to]);
      this.pages.remove(from);
      await this.tellHost('deflate', [from]);
      return { from, to };
    });
  }

  /** update_balloon_size_func(): step toward num_pages, re-reading it each array. Returns the target seen last. */
  async followTarget(): Promise<number> {
    for (;;) {
      const target = this.readConfig().num_pages;
      const diff = target - this.pages.size;
      if (diff === 0 || this.stopped) return target;
      const got = diff > 0 ? await this.fillBalloon(diff) : await this.leakBalloon(-diff);
      this.writeActual();
      if (got.length === 0) return target; // out of guest RAM: Linux retries later
    }
  }

  /** Follow config changes like the driver (virtballoon_changed()); stop() ends the loop. */
  follow(): { stop: () => void; done: Promise<void> } {
    let stop = false;
    const done = (async () => {
      // virtballoon_probe(): if (towards_target(vb)) virtballoon_changed(vdev);
      if (!this.stopped) await this.followTarget();
      while (!stop && !this.stopped) {
        if (await this.waitConfigChange(200)) await this.followTarget();
      }
    })().catch((err: unknown) => {
      if (!this.stopped && !(err instanceof VhostUserError)) throw err;
    });
    return { stop: () => { stop = true; }, done };
  }

  // ---- stats ---------------------------------------------------------------

  /** What update_balloon_stats() reports now. */
  statsEntries(): StatEntries {
    return this.opts.stats?.() ?? vmStats(this.vm, this.mem.size, this.pages.size * PAGE, this.has(VIRTIO_BALLOON_F_DEFLATE_ON_OOM));
  }

  /** Serve one stats request: wait for the device to return the buffer, refill and re-add it. */
  serveStatsOnce(timeoutMs = 3000): Promise<boolean> {
    if (!this.statsQueue) throw new Error('STATS_VQ not negotiated');
    return this.statsQueue.serveOnce(timeoutMs);
  }

  get statsRequestsServed(): number {
    return this.statsQueue?.served ?? 0;
  }

  // ---- messages and reporting ---------------------------------------------

  /** le32 messages on the message queue, `perBuffer` to a buffer, each buffer acked before the next. */
  async sendMessages(msgs: number[], perBuffer = msgs.length || 1): Promise<void> {
    const ring = this.ring('message');
    for (let i = 0; i < msgs.length; i += perBuffer) {
      const chunk = msgs.slice(i, i + perBuffer);
      if (!this.msgBuf || this.msgBuf.cap < chunk.length) this.msgBuf = { gpa: this.mem.alloc(4 * chunk.length, 4), cap: chunk.length };
      const b = this.mem.slice(this.msgBuf.gpa, 4 * chunk.length);
      chunk.forEach((m, k) => b.writeUInt32LE(m >>> 0, 4 * k));
      const head = ring.add([{ gpa: this.msgBuf.gpa, len: b.length }]);
      ring.kick();
      await ring.waitFor(head); // acked before the buffer is reused
    }
  }

  /**
   * virtballoon_free_page_report(): one device-writable sg entry per free
   * range, at most PAGE_REPORTING_CAPACITY to a report, each report acked
   * before the next (Linux reports pageblocks, 2 MiB or larger).
   */
  async reportFree(ranges: Array<{ gpa: number; len: number }>): Promise<void> {
    const ring = this.ring('reporting');
    for (let i = 0; i < ranges.length; i += PAGE_REPORTING_CAPACITY) {
      const head = ring.add(ranges.slice(i, i + PAGE_REPORTING_CAPACITY).map((r) => ({ ...r, write: true })));
      ring.kick();
      await ring.waitFor(head);
    }
  }

  // ---- raw access for bad-input tests ------------------------------------

  /** Post any chain (direct descriptors unless told) and kick; returns the head to wait on. */
  postRaw(role: Role, segments: Segment[], opts: { indirect?: boolean } = {}): number {
    const ring = this.ring(role);
    const head = ring.add(segments, { indirect: opts.indirect ?? false });
    ring.notify();
    return head;
  }

  /** Bytes in the reserved area for a raw payload; returns the gpa. */
  scratch(bytes: Buffer): number {
    return this.mem.put(bytes);
  }

  // ---- lifecycle -----------------------------------------------------------

  /** vhost_dev_stop(): what QEMU does when the driver resets the device. Returns the ring bases. */
  stop(): number[] {
    return devStop(this.fe, { offered: this.offered, rings: [...this.rings.values()] });
  }

  /**
   * A guest reboot: stop, QEMU's reset (our device forwards actual = 0 if
   * the guest had a balloon: vhost_user_balloon_reset()), fresh rings, an
   * empty balloon, probe again. Pages come back to the guest.
   */
  async reboot(opts: { forwardActual?: boolean } = {}): Promise<void> {
    await this.serial(async () => {
      this.stop();
      if (this.lastActual !== 0 && (opts.forwardActual ?? true)) this.writeActual(0);
      for (const r of this.rings.values()) r.close();
      this.pages.clear();
      this.probe();
    });
  }

  /** Migration starts: QEMU hands the backend a dirty log and turns VHOST_F_LOG_ALL on. */
  startLogging(): DirtyLog {
    const last = this.mem.regions.at(-1)!;
    return startLogging(this.fe, { features: this.negotiated, offered: this.offered, mem: this.mem, rings: [...this.rings.values()], gpaEnd: last.gpa + last.size });
  }

  /** A VM pause (QEMU `stop`): vhost_dev_stop(). Returns the ring bases for resume(). */
  pause(): number[] {
    return this.stop();
  }

  /** `cont`: vhost_dev_start() with the rings where they were. */
  resume(bases: number[]): void {
    devStart(this.fe, { features: this.negotiated, offered: this.offered, memTable: this.memTable, mem: this.mem, rings: [...this.rings.values()], bases });
    this.fe.getU64(VHOST_USER.GET_FEATURES);
  }

  /**
   * The vhost-user connection breaks and QEMU (reconnect=) connects again to
   * the running guest: realize again, re-send the guest's `actual` (our QEMU
   * device does, if non-zero), start the rings where the device left them
   * (QEMU restores a lost backend's base from used->idx), so buffers the old
   * connection never acknowledged are handed out again.
   */
  reconnect(opts: { sendActual?: boolean; dropOld?: boolean } = {}): void {
    if (opts.dropOld ?? true) this.dropConnection();
    this.fe = Frontend.connect(this.opts.socketPath);
    const { channel, theirEnd } = BackendChannel.pair();
    this.backend = channel;
    this.theirEnd = theirEnd;
    this.realize();
    if ((opts.sendActual ?? true) && this.lastActual !== 0) this.writeActual(this.lastActual);
    const rings = [...this.rings.values()];
    devStart(this.fe, { features: this.negotiated, offered: this.offered, memTable: this.memTable, mem: this.mem, rings, bases: rings.map((r) => r.deviceUsedIdx) });
    this.fe.getU64(VHOST_USER.GET_FEATURES);
  }

  /** Close the vhost-user socket only: the guest, its RAM and rings stay (QEMU's side of a broken connection). */
  dropConnection(): void {
    this.fe.close();
    this.backend.close();
    this.closeTheirEnd();
  }

  /** virtballoon_remove(): leak everything, update_balloon_size(), reset the device. */
  async remove(): Promise<void> {
    while (this.pages.size) await this.leakBalloon(this.pages.size);
    this.writeActual();
    this.stop();
  }

  /** Drop the connection like a crashing QEMU. */
  close(): void {
    if (this.stopped) return;
    this.stopped = true;
    this.fe.close();
    this.statsQueue?.close();
    for (const r of this.rings.values()) r.close();
    this.backend.close();
    this.closeTheirEnd();
    this.mem.close();
  }

  /** Run balloon operations one at a time (the driver's balloon_lock). */
  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.lock.then(fn, fn);
    this.lock = next.catch(() => undefined);
    return next;
  }

  /** The daemon holds its own copy of the backend channel once SET_SLAVE_REQ_FD went out. */
  private closeTheirEnd(): void {
    if (this.theirEnd !== null) closeFd(this.theirEnd);
    this.theirEnd = null;
  }
}
