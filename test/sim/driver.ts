// A simulated guest: the vhost-user setup QEMU performs plus a
// virtio-balloon driver that behaves like Linux 6.1's virtio_balloon:
// - tell_host(): one buffer of up to 256 le32 PFNs, wait for its ack;
// - fill_balloon()/leak_balloon() then update_balloon_size() (writes `actual`);
// - stats: one buffer primed at probe, refilled whenever the device returns it
//   (stats_handle_request());
// - virtballoon_free_page_report(): device-writable buffers naming free ranges.
import { performance } from 'node:perf_hooks';
import { encodeConfig, decodeConfig } from '../../src/virtio/config.js';
import {
  CONFIG_OFFSET_ACTUAL, CONFIG_SIZE, DEFAULT_MESSAGE_VQ_BIT, QueueRole, VIRTIO_BALLOON_F_STATS_VQ,
  VIRTIO_F_VERSION_1, VIRTIO_RING_F_EVENT_IDX,
} from '../../src/virtio/constants.js';
import { bit, queueRoles } from '../../src/virtio/features.js';
import { encodeStats } from '../../src/device/stats.js';
import { close } from '../../src/transport/libc.js';
import { BackendChannel, Frontend, VHOST_USER, VHOST_USER_F_PROTOCOL_FEATURES, VHOST_USER_SLAVE_CONFIG_CHANGE_MSG } from './frontend.js';
import { GuestMemory, PAGE } from './guest-memory.js';
import { Segment, SplitRing } from './split-ring.js';

export const PFNS_PER_BUFFER = 256; // VIRTIO_BALLOON_ARRAY_PFNS_MAX
const PROTOCOL_F_SLAVE_REQ = 5;
const PROTOCOL_F_CONFIG = 9;

export interface SimGuestOptions {
  socketPath: string;
  ramBytes?: number;
  /** Driver features to accept (ANDed with the device's offer). */
  accept?: bigint;
  messageVqBit?: number;
  /** Values for the stats buffer, tag -> value; called at each refill. */
  stats?: () => Array<[number, number | bigint]>;
  /** Skip queue setup (raw protocol tests). */
  noQueues?: boolean;
}

export class SimGuest {
  readonly mem: GuestMemory;
  readonly fe: Frontend;
  readonly backend: BackendChannel;
  offered = 0n;
  negotiated = 0n;
  protocol = 0n;
  roles: QueueRole[] = [];
  readonly rings = new Map<QueueRole, SplitRing>();
  /** Pages currently in the balloon, in inflate order (LIFO deflate). */
  readonly balloon: number[] = [];
  private nextPfn: number;
  private readonly pfnBuf: number;
  private statsHead = -1;
  private readonly statsBuf: number;
  private statsRefills = 0;
  private stopped = false;

  private constructor(readonly opts: SimGuestOptions) {
    this.mem = new GuestMemory(opts.ramBytes ?? 256 << 20);
    this.fe = Frontend.connect(opts.socketPath);
    const { channel, theirEnd } = BackendChannel.pair();
    this.backend = channel;
    this.backendTheirEnd = theirEnd;
    // Linux takes pages from the top of free memory first; so do we.
    this.nextPfn = this.mem.usableEnd / PAGE - 1;
    this.pfnBuf = this.mem.alloc(4 * PFNS_PER_BUFFER * 2, 64);
    this.statsBuf = this.mem.alloc(10 * 16, 8);
  }

  private readonly backendTheirEnd: number;

  /** Connect, negotiate and set up every queue, like QEMU + the driver probe. */
  static async start(opts: SimGuestOptions): Promise<SimGuest> {
    const g = new SimGuest(opts);
    g.handshake();
    if (!opts.noQueues) await g.setupQueues();
    return g;
  }

  get messageVqBit(): number {
    return this.opts.messageVqBit ?? DEFAULT_MESSAGE_VQ_BIT;
  }

  private handshake(): void {
    const fe = this.fe;
    this.offered = fe.getU64(VHOST_USER.GET_FEATURES);
    if (this.offered & bit(VHOST_USER_F_PROTOCOL_FEATURES)) {
      const proto = fe.getU64(VHOST_USER.GET_PROTOCOL_FEATURES);
      this.protocol = proto & (bit(PROTOCOL_F_SLAVE_REQ) | bit(PROTOCOL_F_CONFIG));
      fe.setU64(VHOST_USER.SET_PROTOCOL_FEATURES, this.protocol);
    }
    if (this.protocol & bit(PROTOCOL_F_SLAVE_REQ)) fe.send(VHOST_USER.SET_SLAVE_REQ_FD, Buffer.alloc(0), [this.backendTheirEnd]);
    close(this.backendTheirEnd); // the daemon holds its own copy now
    fe.send(VHOST_USER.SET_OWNER);
    // The simulated ring keeps no used_event, so EVENT_IDX stays off.
    const accept = (this.opts.accept ?? ~0n) & ~bit(VIRTIO_RING_F_EVENT_IDX);
    this.negotiated = this.offered & accept & ((1n << 64n) - 1n);
    this.negotiated |= bit(VIRTIO_F_VERSION_1) & this.offered;
    fe.setU64(VHOST_USER.SET_FEATURES, this.negotiated | (this.offered & bit(VHOST_USER_F_PROTOCOL_FEATURES)));
    this.roles = queueRoles(this.negotiated, this.messageVqBit);
    this.setMemTable();
  }

  private setMemTable(): void {
    const p = Buffer.alloc(8 + 32);
    p.writeUInt32LE(1, 0);
    p.writeBigUInt64LE(0n, 8); // guest_phys_addr
    p.writeBigUInt64LE(BigInt(this.mem.size), 16);
    p.writeBigUInt64LE(this.mem.hostAddr, 24); // userspace_addr
    p.writeBigUInt64LE(0n, 32); // mmap_offset
    this.fe.send(VHOST_USER.SET_MEM_TABLE, p, [this.mem.fd]);
  }

  private async setupQueues(): Promise<void> {
    this.roles.forEach((role, index) => {
      const ring = new SplitRing(this.mem, index, 128);
      this.rings.set(role, ring);
      const st = Buffer.alloc(8);
      st.writeUInt32LE(index, 0);
      st.writeUInt32LE(ring.num, 4);
      this.fe.send(VHOST_USER.SET_VRING_NUM, st);
      st.writeUInt32LE(0, 4);
      this.fe.send(VHOST_USER.SET_VRING_BASE, st);
      const addr = Buffer.alloc(40);
      addr.writeUInt32LE(index, 0);
      addr.writeBigUInt64LE(this.mem.hostAddr + BigInt(ring.desc), 8);
      addr.writeBigUInt64LE(this.mem.hostAddr + BigInt(ring.used), 16);
      addr.writeBigUInt64LE(this.mem.hostAddr + BigInt(ring.avail), 24);
      this.fe.send(VHOST_USER.SET_VRING_ADDR, addr);
      const idx = Buffer.alloc(8);
      idx.writeBigUInt64LE(BigInt(index));
      this.fe.send(VHOST_USER.SET_VRING_KICK, idx, [ring.kickFd]);
      this.fe.send(VHOST_USER.SET_VRING_CALL, idx, [ring.callFd]);
      const en = Buffer.alloc(8);
      en.writeUInt32LE(index, 0);
      en.writeUInt32LE(1, 4);
      this.fe.send(VHOST_USER.SET_VRING_ENABLE, en);
    });
    // QEMU finishes vhost_dev_start() before the guest runs on; a request
    // with a reply makes sure the backend has applied every setup message.
    this.fe.getU64(VHOST_USER.GET_FEATURES);
    // The driver primes the stats buffer at probe (init_vqs()).
    if (this.negotiated & bit(VIRTIO_BALLOON_F_STATS_VQ)) this.primeStats();
  }

  ring(role: QueueRole): SplitRing {
    const r = this.rings.get(role);
    if (!r) throw new Error(`queue ${role} not negotiated (queues: ${this.roles.join(', ')})`);
    return r;
  }

  // ---- config space -------------------------------------------------------

  readConfig() {
    const p = Buffer.alloc(12 + CONFIG_SIZE);
    p.writeUInt32LE(0, 0);
    p.writeUInt32LE(CONFIG_SIZE, 4);
    const r = this.fe.call(VHOST_USER.GET_CONFIG, p);
    return decodeConfig(r.payload.subarray(12, 12 + CONFIG_SIZE));
  }

  /** The driver writes `actual` (update_balloon_size()); QEMU forwards it. */
  writeActual(pages: number): void {
    const cfg = encodeConfig({ num_pages: 0, actual: pages, free_page_hint_cmd_id: 0, poison_val: 0 });
    this.setConfig(CONFIG_OFFSET_ACTUAL, cfg.subarray(CONFIG_OFFSET_ACTUAL, CONFIG_OFFSET_ACTUAL + 4));
  }

  setConfig(offset: number, data: Buffer): void {
    const p = Buffer.alloc(12 + data.length);
    p.writeUInt32LE(offset, 0);
    p.writeUInt32LE(data.length, 4);
    data.copy(p, 12);
    this.fe.send(VHOST_USER.SET_CONFIG, p);
  }

  /** Wait for VHOST_USER_SLAVE_CONFIG_CHANGE_MSG; false on timeout. */
  async waitConfigChange(timeoutMs = 2000): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const m = await this.backend.next(Math.max(0, deadline - Date.now()));
      if (!m) return false;
      if (m.request === VHOST_USER_SLAVE_CONFIG_CHANGE_MSG) return true;
    }
  }

  // ---- inflate / deflate --------------------------------------------------

  /** Hand PFNs to a queue in 256-PFN buffers, waiting for each ack (tell_host). */
  async tellHost(role: 'inflate' | 'deflate', pfns: ArrayLike<number>, onBatch?: (ms: number) => void): Promise<void> {
    const ring = this.ring(role);
    for (let i = 0; i < pfns.length; i += PFNS_PER_BUFFER) {
      const n = Math.min(PFNS_PER_BUFFER, pfns.length - i);
      for (let k = 0; k < n; k++) this.mem.bytes.writeUInt32LE(pfns[i + k]! >>> 0, this.pfnBuf + 4 * k);
      const t0 = performance.now();
      const head = ring.add([{ gpa: this.pfnBuf, len: 4 * n }]);
      ring.kick();
      await ring.waitFor(head);
      onBatch?.(performance.now() - t0);
    }
  }

  /** fill_balloon(): take `pages` pages and give them to the host. */
  async inflate(pages: number, opts: { pfns?: number[]; onBatch?: (ms: number) => void } = {}): Promise<number[]> {
    const pfns = opts.pfns ?? Array.from({ length: pages }, () => this.nextPfn--);
    await this.tellHost('inflate', pfns, opts.onBatch);
    this.balloon.push(...pfns);
    this.writeActual(this.balloon.length);
    return pfns;
  }

  /** leak_balloon(): take `pages` pages back (last in, first out). */
  async deflate(pages: number): Promise<number[]> {
    const pfns = this.balloon.splice(Math.max(0, this.balloon.length - pages)).reverse();
    await this.tellHost('deflate', pfns);
    this.writeActual(this.balloon.length);
    return pfns;
  }

  /** Inflate or deflate until `actual` equals the device's num_pages. */
  async followTarget(): Promise<number> {
    const { num_pages } = this.readConfig();
    const diff = num_pages - this.balloon.length;
    if (diff > 0) await this.inflate(diff);
    else if (diff < 0) await this.deflate(-diff);
    return num_pages;
  }

  /** React to config changes like the driver's update_balloon_size_func(). */
  follow(): { stop: () => void; done: Promise<void> } {
    let stop = false;
    const done = (async () => {
      while (!stop && !this.stopped) {
        if (await this.waitConfigChange(200)) await this.followTarget();
      }
    })();
    return { stop: () => { stop = true; }, done };
  }

  // ---- stats ---------------------------------------------------------------

  private statsEntries(): Array<[number, number | bigint]> {
    return this.opts.stats?.() ?? [[5, this.mem.size], [6, this.mem.size / 2], [4, this.mem.size / 4]];
  }

  private primeStats(): void {
    const b = encodeStats(this.statsEntries());
    b.copy(this.mem.bytes, this.statsBuf);
    const ring = this.ring('stats');
    this.statsHead = ring.add([{ gpa: this.statsBuf, len: b.length }]);
    ring.kick();
  }

  /** Serve stats requests: when the device returns the buffer, refill it. */
  async serveStatsOnce(timeoutMs = 3000): Promise<boolean> {
    const ring = this.ring('stats');
    try {
      await ring.waitFor(this.statsHead, timeoutMs);
    } catch {
      return false;
    }
    this.statsRefills++;
    this.primeStats();
    return true;
  }

  get statsRequestsServed(): number {
    return this.statsRefills;
  }

  // ---- messages and reporting ---------------------------------------------

  async sendMessages(msgs: number[], perBuffer = msgs.length || 1): Promise<void> {
    const ring = this.ring('message');
    for (let i = 0; i < msgs.length; i += perBuffer) {
      const chunk = msgs.slice(i, i + perBuffer);
      const at = this.mem.alloc(4 * chunk.length, 4);
      chunk.forEach((m, k) => this.mem.bytes.writeUInt32LE(m >>> 0, at + 4 * k));
      const head = ring.add([{ gpa: at, len: 4 * chunk.length }]);
      ring.kick();
      await ring.waitFor(head);
    }
  }

  /** Report free ranges (virtballoon_free_page_report()). */
  async reportFree(ranges: Array<{ gpa: number; len: number }>): Promise<void> {
    const ring = this.ring('reporting');
    const head = ring.add(ranges.map((r) => ({ ...r, write: true })));
    ring.kick();
    await ring.waitFor(head);
  }

  // ---- raw access for bad-input tests ------------------------------------

  /** Post any chain and kick; returns the head to wait on. */
  postRaw(role: QueueRole, segments: Segment[]): number {
    const ring = this.ring(role);
    const head = ring.add(segments);
    ring.kick();
    return head;
  }

  /** Bytes in the reserved area for a raw payload. */
  scratch(bytes: Buffer): number {
    const at = this.mem.alloc(bytes.length, 8);
    bytes.copy(this.mem.bytes, at);
    return at;
  }

  /** Drop the connection like a crashing QEMU. */
  close(): void {
    this.stopped = true;
    this.fe.close();
    for (const r of this.rings.values()) r.close();
    this.backend.close();
    this.mem.close();
  }
}
