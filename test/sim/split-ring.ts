// A split virtqueue driven from the driver side (virtio 1.2, 2.7), as
// Linux's virtio_ring.c drives it: descriptor table, avail ring and used ring
// in guest RAM; kicks and interrupts are eventfds. With VIRTIO_RING_F_EVENT_IDX
// the ring suppresses kicks by avail_event and asks for interrupts by writing
// used_event = last_used_idx after every get_buf; with
// VIRTIO_RING_F_INDIRECT_DESC a chain of more than one segment goes into an
// indirect table (virtqueue_use_indirect()).
import koffi from 'koffi';
import { EFD_CLOEXEC, EFD_NONBLOCK, close, eventfd, eventfdRead, eventfdWrite } from '../../src/transport/libc.js';
import type { GuestMemory } from './guest-memory.js';

export const VIRTQ_DESC_F_NEXT = 1;
export const VIRTQ_DESC_F_WRITE = 2;
export const VIRTQ_DESC_F_INDIRECT = 4;
export const VRING_USED_F_NO_NOTIFY = 1;

export interface Segment {
  gpa: number;
  len: number;
  /** Device-writable (an "in" buffer); otherwise device-readable. */
  write?: boolean;
}

export interface Used {
  id: number;
  len: number;
}

export interface RingOptions {
  eventIdx?: boolean;
  indirect?: boolean;
}

/** vring_need_event() from the virtio spec. */
export function vringNeedEvent(event: number, newIdx: number, old: number): boolean {
  return ((newIdx - event - 1) & 0xffff) < ((newIdx - old) & 0xffff);
}

export class SplitRing {
  /** Guest-physical addresses of the three parts. */
  readonly desc: number;
  readonly avail: number;
  readonly used: number;
  readonly kickFd: number;
  readonly callFd: number;
  readonly eventIdx: boolean;
  readonly indirect: boolean;
  private readonly d: Buffer;
  private readonly a: Buffer;
  private readonly u: Buffer;
  /** u16 views for the stores that need a full barrier (Atomics on x86 is xchg). */
  private readonly a16: Uint16Array;
  /**
   * The used ring's u16 fields (flags, idx, avail_event), which the device
   * writes while we read: one 16-bit load each. Buffer.readUInt16LE reads two
   * bytes apart, and a torn used->idx (0x00ff -> 0x0100 read as 0x01ff)
   * made us reap 256 stale entries (seen: "device used id 1, which is not in
   * flight" under a message flood).
   */
  private readonly u16: Uint16Array;
  private freeHead = 0;
  private numFree: number;
  private availIdx = 0;
  private kickedIdx = 0;
  private lastUsed = 0;
  /** head -> descriptor indices of the chain, to return them to the free list. */
  private readonly chains = new Map<number, number[]>();
  private readonly tables = new Map<number, { gpa: number; cap: number }>();
  private readonly waiters: Array<() => void> = [];
  private readonly poll: ReturnType<typeof koffi.node.poll>;
  /** Completed buffers not yet taken by waitFor()/take(). */
  readonly completed: Used[] = [];
  /** Called on every interrupt, before waiters wake (the vq callback). */
  onInterrupt: (() => void) | undefined;
  readonly counters = { kicks: 0, kicksSuppressed: 0, interrupts: 0, lostInterrupts: 0 };

  constructor(private readonly mem: GuestMemory, readonly index: number, readonly num = 128, opts: RingOptions = {}) {
    if (num & (num - 1) || num > 32768) throw new RangeError(`queue size ${num} is not a power of 2 <= 32768`);
    this.eventIdx = opts.eventIdx ?? false;
    this.indirect = opts.indirect ?? false;
    this.desc = mem.alloc(16 * num, 16);
    this.avail = mem.alloc(6 + 2 * num, 2);
    this.used = mem.alloc(6 + 8 * num, 4);
    this.d = mem.slice(this.desc, 16 * num);
    this.a = mem.slice(this.avail, 6 + 2 * num);
    this.u = mem.slice(this.used, 6 + 8 * num);
    this.a16 = new Uint16Array(this.a.buffer, this.a.byteOffset, (6 + 2 * num) / 2);
    this.u16 = new Uint16Array(this.u.buffer, this.u.byteOffset, (6 + 8 * num) / 2);
    this.d.fill(0);
    this.a.fill(0);
    this.u.fill(0);
    for (let i = 0; i < num; i++) this.d.writeUInt16LE((i + 1) % num, 16 * i + 14);
    this.numFree = num;
    this.kickFd = Number(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    this.callFd = Number(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    this.poll = koffi.node.poll(this.callFd, { readable: true }, () => this.onCall());
    this.poll.unref();
  }

  get freeDescriptors(): number {
    return this.numFree;
  }

  /** Buffers added and not yet used by the device. */
  get inFlight(): number {
    return this.chains.size;
  }

  /**
   * Put one chain in the avail ring (no kick). Returns its head id. Like
   * virtqueue_add(): out (device-readable) segments must come before in ones,
   * which this does not enforce so that tests can post bad chains.
   */
  add(segments: Segment[], opts: { indirect?: boolean } = {}): number {
    const useIndirect = opts.indirect ?? (this.indirect && segments.length > 1);
    const need = useIndirect ? 1 : segments.length;
    if (segments.length === 0 || need > this.numFree) throw new Error(`ring ${this.index}: no room for ${segments.length} descriptors`);
    const head = this.freeHead;
    const used: number[] = [];
    if (useIndirect) {
      used.push(head);
      const table = this.table(head, segments.length);
      const t = this.mem.slice(table, 16 * segments.length);
      segments.forEach((s, i) => {
        const last = i === segments.length - 1;
        writeDesc(t, i, s.gpa, s.len, (last ? 0 : VIRTQ_DESC_F_NEXT) | (s.write ? VIRTQ_DESC_F_WRITE : 0), last ? 0 : i + 1);
      });
      this.freeHead = this.d.readUInt16LE(16 * head + 14);
      writeDesc(this.d, head, table, 16 * segments.length, VIRTQ_DESC_F_INDIRECT, this.freeHead);
    } else {
      let d = head;
      segments.forEach((s, i) => {
        const last = i === segments.length - 1;
        used.push(d);
        const next = this.d.readUInt16LE(16 * d + 14);
        writeDesc(this.d, d, s.gpa, s.len, (last ? 0 : VIRTQ_DESC_F_NEXT) | (s.write ? VIRTQ_DESC_F_WRITE : 0), next);
        if (last) this.freeHead = next;
        else d = next;
      });
    }
    this.numFree -= need;
    this.chains.set(head, used);
    this.publish(head);
    return head;
  }

  /**
   * Put raw descriptors in the table (taken from the free list) and publish
   * the first as a head: any flags, lengths and `next` links (given as
   * indices into `descs`; default the following one). For bad-input tests.
   */
  addRaw(descs: Array<{ gpa: number; len: number; flags: number; next?: number }>): number {
    if (descs.length === 0 || descs.length > this.numFree) throw new Error(`ring ${this.index}: no room for ${descs.length} raw descriptors`);
    const idx: number[] = [];
    let d = this.freeHead;
    for (let i = 0; i < descs.length; i++) {
      idx.push(d);
      d = this.d.readUInt16LE(16 * d + 14);
    }
    this.freeHead = d;
    descs.forEach((x, i) => writeDesc(this.d, idx[i]!, x.gpa, x.len, x.flags, idx[x.next ?? i + 1] ?? 0));
    this.numFree -= descs.length;
    this.chains.set(idx[0]!, idx);
    this.publish(idx[0]!);
    return idx[0]!;
  }

  /** Put a head in the avail ring and publish the new index (with a full barrier). */
  publish(head: number): void {
    this.a.writeUInt16LE(head, 4 + 2 * (this.availIdx % this.num));
    this.availIdx = (this.availIdx + 1) & 0xffff;
    Atomics.store(this.a16, 1, this.availIdx);
  }

  /** virtqueue_kick(): notify unless the device asked not to be. Returns whether it notified. */
  kick(): boolean {
    const old = this.kickedIdx;
    const now = this.availIdx;
    this.kickedIdx = now;
    const needs = this.eventIdx
      ? vringNeedEvent(Atomics.load(this.u16, 2 + 4 * this.num), now, old)
      : !(Atomics.load(this.u16, 0) & VRING_USED_F_NO_NOTIFY);
    if (!needs) {
      this.counters.kicksSuppressed++;
      return false;
    }
    this.notify();
    return true;
  }

  /** Write the kick eventfd regardless of suppression. */
  notify(): void {
    this.counters.kicks++;
    eventfdWrite(this.kickFd);
  }

  /** Collect newly used buffers, free their descriptors, re-arm used_event. */
  reap(): Used[] {
    const idx = Atomics.load(this.u16, 1);
    const out: Used[] = [];
    while (this.lastUsed !== idx) {
      const at = 4 + 8 * (this.lastUsed % this.num);
      const u = { id: this.u.readUInt32LE(at), len: this.u.readUInt32LE(at + 4) };
      out.push(u);
      this.lastUsed = (this.lastUsed + 1) & 0xffff;
      const chain = this.chains.get(u.id);
      if (chain === undefined) throw new Error(`ring ${this.index}: device used id ${u.id}, which is not in flight`);
      this.chains.delete(u.id);
      chain.forEach((d, i) => this.d.writeUInt16LE(chain[i + 1] ?? this.freeHead, 16 * d + 14));
      this.freeHead = u.id;
      this.numFree += chain.length;
    }
    // Ask for an interrupt at the next used entry (virtqueue_get_buf_ctx_split()).
    if (this.eventIdx) Atomics.store(this.a16, 2 + this.num, this.lastUsed);
    this.completed.push(...out);
    return out;
  }

  /** used->idx as the device last wrote it (QEMU restores a lost backend's base from it). */
  get deviceUsedIdx(): number {
    return Atomics.load(this.u16, 1);
  }

  /** avail->idx as published. */
  get publishedAvailIdx(): number {
    return this.availIdx;
  }

  /** Has the device used buffers we have not reaped? */
  get pending(): boolean {
    return Atomics.load(this.u16, 1) !== this.lastUsed;
  }

  /** Take a completed buffer by head, reaping first. */
  take(head: number): Used | undefined {
    this.reap();
    const i = this.completed.findIndex((u) => u.id === head);
    return i >= 0 ? this.completed.splice(i, 1)[0] : undefined;
  }

  /**
   * Wait until `head` was used (tell_host()'s wait_event). A buffer found
   * used after a wait that no interrupt ended counts as a lost interrupt:
   * the Linux driver would sleep forever there.
   */
  async waitFor(head: number, timeoutMs = 5000): Promise<Used> {
    const deadline = Date.now() + timeoutMs;
    let woke = true;
    for (;;) {
      const u = this.take(head);
      if (u) {
        if (!woke) this.counters.lostInterrupts++;
        return u;
      }
      if (this.pending) continue; // used_event re-armed after the device pushed
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`ring ${this.index}: buffer ${head} not used within ${timeoutMs} ms`);
      woke = await this.nextCall(left);
      if (!woke && eventfdRead(this.callFd) > 0n) {
        this.counters.interrupts++; // raised, but its callback had not run yet
        woke = true;
      }
    }
  }

  /** Resolve true on the next interrupt, false after min(ms, 100) without one. */
  nextCall(ms: number): Promise<boolean> {
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        const i = this.waiters.indexOf(wake);
        if (i >= 0) this.waiters.splice(i, 1);
        if (this.waiters.length === 0) this.poll.unref();
        resolve(false);
      }, Math.min(ms, 100));
      const wake = () => { clearTimeout(t); resolve(true); };
      this.poll.ref();
      this.waiters.push(wake);
    });
  }

  private onCall(): void {
    if (eventfdRead(this.callFd) === 0n) return;
    this.counters.interrupts++;
    this.onInterrupt?.();
    const w = this.waiters.splice(0);
    if (this.waiters.length === 0) this.poll.unref();
    for (const f of w) f();
  }

  /** Per-head indirect table (Linux allocates one per add; we reuse by head). */
  private table(head: number, n: number): number {
    let t = this.tables.get(head);
    if (!t || t.cap < n) {
      const cap = Math.max(32, 2 ** Math.ceil(Math.log2(n)));
      t = { gpa: this.mem.alloc(16 * cap, 16), cap };
      this.tables.set(head, t);
    }
    return t.gpa;
  }

  // ---- raw access for bad-input tests ------------------------------------

  /** Set avail->idx to any value (a guest that lies about how much it added). */
  setAvailIdxRaw(idx: number): void {
    this.availIdx = idx & 0xffff;
    Atomics.store(this.a16, 1, this.availIdx);
  }

  close(): void {
    this.poll.close();
    close(this.kickFd);
    close(this.callFd);
  }
}

function writeDesc(b: Buffer, i: number, gpa: number, len: number, flags: number, next: number): void {
  const at = 16 * i;
  b.writeBigUInt64LE(BigInt(gpa), at);
  b.writeUInt32LE(len >>> 0, at + 8);
  b.writeUInt16LE(flags, at + 12);
  b.writeUInt16LE(next, at + 14);
}
