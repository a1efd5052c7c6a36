// A split virtqueue driven from the driver side (virtio 1.2, 2.7): the
// descriptor table, avail ring and used ring live in guest RAM; kicks and
// interrupts are eventfds.
import koffi from 'koffi';
import { EFD_CLOEXEC, EFD_NONBLOCK, close, eventfd, eventfdRead, eventfdWrite } from '../../src/transport/libc.js';
import type { GuestMemory } from './guest-memory.js';

export const VIRTQ_DESC_F_NEXT = 1;
export const VIRTQ_DESC_F_WRITE = 2;

export interface Segment {
  gpa: number;
  len: number;
  /** Device-writable (driver reads it); otherwise device-readable. */
  write?: boolean;
}

export interface Used {
  id: number;
  len: number;
}

export class SplitRing {
  readonly desc: number;
  readonly avail: number;
  readonly used: number;
  readonly kickFd: number;
  readonly callFd: number;
  private freeHead = 0;
  private numFree: number;
  private availIdx = 0;
  private lastUsed = 0;
  private readonly chainLen = new Map<number, number>();
  private readonly waiters: Array<() => void> = [];
  private readonly poll: ReturnType<typeof koffi.node.poll>;
  /** Completed buffers not yet taken by take(). */
  readonly completed: Used[] = [];

  constructor(private readonly mem: GuestMemory, readonly index: number, readonly num = 256) {
    this.desc = mem.alloc(16 * num, 16);
    this.avail = mem.alloc(6 + 2 * num, 2);
    this.used = mem.alloc(6 + 8 * num, 4);
    const b = mem.bytes;
    for (let i = 0; i < num; i++) b.writeUInt16LE((i + 1) % num, this.desc + 16 * i + 14);
    this.numFree = num;
    this.kickFd = Number(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    this.callFd = Number(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    this.poll = koffi.node.poll(this.callFd, { readable: true }, () => this.onCall());
    this.poll.unref();
  }

  get freeDescriptors(): number {
    return this.numFree;
  }

  /** Put one chain in the avail ring (no kick). Returns its head id. */
  add(segments: Segment[]): number {
    if (segments.length === 0 || segments.length > this.numFree) throw new Error(`ring ${this.index}: no room for ${segments.length} descriptors`);
    const b = this.mem.bytes;
    const head = this.freeHead;
    let d = head;
    segments.forEach((s, i) => {
      const at = this.desc + 16 * d;
      b.writeBigUInt64LE(BigInt(s.gpa), at);
      b.writeUInt32LE(s.len >>> 0, at + 8);
      const last = i === segments.length - 1;
      b.writeUInt16LE((last ? 0 : VIRTQ_DESC_F_NEXT) | (s.write ? VIRTQ_DESC_F_WRITE : 0), at + 12);
      if (!last) d = b.readUInt16LE(at + 14);
      else this.freeHead = b.readUInt16LE(at + 14);
    });
    this.numFree -= segments.length;
    this.chainLen.set(head, segments.length);
    b.writeUInt16LE(head, this.avail + 4 + 2 * (this.availIdx % this.num));
    this.availIdx = (this.availIdx + 1) & 0xffff;
    b.writeUInt16LE(this.availIdx, this.avail + 2); // publish after the entry
    return head;
  }

  kick(): void {
    eventfdWrite(this.kickFd);
  }

  /** Collect newly used buffers and free their descriptors. */
  reap(): Used[] {
    const b = this.mem.bytes;
    const idx = b.readUInt16LE(this.used + 2);
    const out: Used[] = [];
    while (this.lastUsed !== idx) {
      const at = this.used + 4 + 8 * (this.lastUsed % this.num);
      const u = { id: b.readUInt32LE(at), len: b.readUInt32LE(at + 4) };
      out.push(u);
      this.lastUsed = (this.lastUsed + 1) & 0xffff;
      const n = this.chainLen.get(u.id) ?? 1;
      this.chainLen.delete(u.id);
      // Return the chain to the free list.
      let tail = u.id;
      for (let i = 1; i < n; i++) tail = b.readUInt16LE(this.desc + 16 * tail + 14);
      b.writeUInt16LE(this.freeHead, this.desc + 16 * tail + 14);
      this.freeHead = u.id;
      this.numFree += n;
    }
    this.completed.push(...out);
    return out;
  }

  /** Wait until `head` was used (the device acknowledged that buffer). */
  async waitFor(head: number, timeoutMs = 5000): Promise<Used> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      this.reap();
      const i = this.completed.findIndex((u) => u.id === head);
      if (i >= 0) return this.completed.splice(i, 1)[0]!;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`ring ${this.index}: buffer ${head} not used within ${timeoutMs} ms`);
      await this.nextCall(left);
    }
  }

  /** Resolve on the next interrupt or after ms. */
  nextCall(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(resolve, Math.min(ms, 100));
      this.poll.ref();
      this.waiters.push(() => { clearTimeout(t); resolve(); });
    });
  }

  private onCall(): void {
    eventfdRead(this.callFd);
    const w = this.waiters.splice(0);
    if (this.waiters.length === 0) this.poll.unref();
    for (const f of w) f();
  }

  close(): void {
    this.poll.close();
    close(this.kickFd);
    close(this.callFd);
  }
}
