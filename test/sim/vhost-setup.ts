// What QEMU 7.2 sends a vhost-user backend, in its order:
// - vhost_user_backend_init() + vhost_dev_init() at realize: GET_FEATURES,
//   GET/SET_PROTOCOL_FEATURES (everything offered within QEMU's mask),
//   GET_QUEUE_NUM (MQ), GET_MAX_MEM_SLOTS (CONFIGURE_MEM_SLOTS),
//   SET_SLAVE_REQ_FD (acked), SET_OWNER, GET_FEATURES; the device then reads
//   its config (GET_CONFIG);
// - vhost_dev_start() at DRIVER_OK: SET_FEATURES, the memory table
//   (ADD_MEM_REG per region with CONFIGURE_MEM_SLOTS, else SET_MEM_TABLE;
//   acked), per queue SET_VRING_NUM/BASE/ADDR/KICK/CALL, then
//   SET_VRING_ENABLE 1 for each;
// - vhost_dev_stop(): SET_VRING_ENABLE 0, then GET_VRING_BASE per queue.
import koffi from 'koffi';
import type { GuestMemory, Region } from './guest-memory.js';
import { Frontend, QEMU_7_2_PROTOCOL_MASK, VHOST_USER, VHOST_USER_F_PROTOCOL_FEATURES, VHOST_USER_PROTOCOL_F } from './frontend.js';
import { bit } from './linux.js';
import type { SplitRing } from './split-ring.js';
import { close, mapMemfd } from './sys.js';

export interface BackendInfo {
  /** Virtio features the backend offers (GET_FEATURES). */
  offered: bigint;
  /** Protocol features in use after SET_PROTOCOL_FEATURES. */
  protocol: bigint;
  queueNum?: bigint;
  maxMemSlots?: bigint;
}

export const hasProto = (protocol: bigint, f: number): boolean => (protocol & bit(f)) !== 0n;

/** Realize: negotiate the protocol, hand over the backend channel, take ownership. */
export function backendInit(fe: Frontend, slaveFd: number | null, protocolMask = QEMU_7_2_PROTOCOL_MASK): BackendInfo {
  const offered = fe.getU64(VHOST_USER.GET_FEATURES);
  const info: BackendInfo = { offered, protocol: 0n };
  if (offered & bit(VHOST_USER_F_PROTOCOL_FEATURES)) {
    info.protocol = fe.getU64(VHOST_USER.GET_PROTOCOL_FEATURES) & protocolMask;
    fe.setU64(VHOST_USER.SET_PROTOCOL_FEATURES, info.protocol);
    fe.replyAck = hasProto(info.protocol, VHOST_USER_PROTOCOL_F.REPLY_ACK);
    if (hasProto(info.protocol, VHOST_USER_PROTOCOL_F.MQ)) info.queueNum = fe.getU64(VHOST_USER.GET_QUEUE_NUM);
    if (hasProto(info.protocol, VHOST_USER_PROTOCOL_F.CONFIGURE_MEM_SLOTS)) info.maxMemSlots = fe.getU64(VHOST_USER.GET_MAX_MEM_SLOTS);
  }
  if (slaveFd !== null && hasProto(info.protocol, VHOST_USER_PROTOCOL_F.SLAVE_REQ)) {
    fe.acked(VHOST_USER.SET_SLAVE_REQ_FD, Buffer.alloc(0), [slaveFd]);
  }
  fe.send(VHOST_USER.SET_OWNER);
  fe.getU64(VHOST_USER.GET_FEATURES);
  return info;
}

/** VhostUserMemoryRegion: guest_phys_addr, memory_size, userspace_addr, mmap_offset. */
function regionBytes(mem: GuestMemory, r: Region): Buffer {
  const b = Buffer.alloc(32);
  b.writeBigUInt64LE(BigInt(r.gpa), 0);
  b.writeBigUInt64LE(BigInt(r.size), 8);
  b.writeBigUInt64LE(mem.hostAddr + BigInt(r.offset), 16);
  b.writeBigUInt64LE(BigInt(r.offset), 24);
  return b;
}

/** Tracks which regions the backend has (QEMU's shadow_regions). */
export class MemTable {
  private shadow: Region[] = [];

  constructor(private readonly fe: Frontend, private readonly mem: GuestMemory, private readonly protocol: bigint) {}

  /** Send `regions` (default: the guest's) the way vhost_user_set_mem_table() does. */
  sync(regions: Region[] = this.mem.regions): void {
    if (hasProto(this.protocol, VHOST_USER_PROTOCOL_F.CONFIGURE_MEM_SLOTS)) {
      const same = (a: Region, b: Region) => a.gpa === b.gpa && a.size === b.size && a.offset === b.offset;
      for (const r of this.shadow.filter((s) => !regions.some((n) => same(n, s)))) {
        // VhostUserMemRegMsg: u64 padding, region. REM_MEM_REG carries no fd.
        this.fe.acked(VHOST_USER.REM_MEM_REG, Buffer.concat([Buffer.alloc(8), regionBytes(this.mem, r)]));
      }
      for (const r of regions.filter((n) => !this.shadow.some((s) => same(n, s)))) {
        this.fe.acked(VHOST_USER.ADD_MEM_REG, Buffer.concat([Buffer.alloc(8), regionBytes(this.mem, r)]), [this.mem.fd]);
      }
    } else {
      // VhostUserMemory: u32 nregions, u32 padding, regions; one fd per region.
      const head = Buffer.alloc(8);
      head.writeUInt32LE(regions.length, 0);
      const payload = Buffer.concat([head, ...regions.map((r) => regionBytes(this.mem, r))]);
      this.fe.acked(VHOST_USER.SET_MEM_TABLE, payload, regions.map(() => this.mem.fd));
    }
    this.shadow = [...regions];
  }
}

function state(index: number, num: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeUInt32LE(index, 0);
  b.writeUInt32LE(num >>> 0, 4);
  return b;
}

function u64(v: number | bigint): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt(v));
  return b;
}

/** struct vhost_vring_addr: index, flags (VHOST_VRING_F_LOG), desc, used, avail (QEMU VAs), log_guest_addr (gpa). */
function vringAddr(mem: GuestMemory, ring: SplitRing, log: boolean): Buffer {
  const addr = Buffer.alloc(40);
  addr.writeUInt32LE(ring.index, 0);
  addr.writeUInt32LE(log ? 1 : 0, 4);
  addr.writeBigUInt64LE(mem.hva(ring.desc), 8);
  addr.writeBigUInt64LE(mem.hva(ring.used), 16);
  addr.writeBigUInt64LE(mem.hva(ring.avail), 24);
  addr.writeBigUInt64LE(BigInt(ring.used), 32);
  return addr;
}

const VHOST_F_LOG_ALL = 26;
const VHOST_LOG_PAGE = 4096;

/** The dirty log QEMU gives the backend for migration: one bit per 4 KiB page of guest-physical space. */
export interface DirtyLog {
  bytes: Buffer;
  /** Is the page at gpa marked dirty? */
  dirty(gpa: number): boolean;
  clear(): void;
}

/**
 * vhost_log_global_start() (migration begins): SET_LOG_BASE with a shared
 * log (LOG_SHMFD, acked with a reply), SET_FEATURES with VHOST_F_LOG_ALL,
 * and each ring's address again with VHOST_VRING_F_LOG.
 */
export function startLogging(fe: Frontend, opts: {
  features: bigint; offered: bigint; mem: GuestMemory; rings: SplitRing[]; gpaEnd: number;
}): DirtyLog {
  const size = Math.ceil(opts.gpaEnd / VHOST_LOG_PAGE / 64) * 8; // in u64s, as vhost_get_log_size()
  const m = mapMemfd('vub-sim-log', size);
  const payload = Buffer.alloc(16);
  payload.writeBigUInt64LE(BigInt(size), 0); // mmap_size, then mmap_offset 0
  fe.call(VHOST_USER.SET_LOG_BASE, payload, [m.fd]);
  close(m.fd);
  fe.setU64(VHOST_USER.SET_FEATURES, opts.features | (opts.offered & bit(VHOST_USER_F_PROTOCOL_FEATURES)) | bit(VHOST_F_LOG_ALL));
  for (const r of opts.rings) fe.send(VHOST_USER.SET_VRING_ADDR, vringAddr(opts.mem, r, true));
  const bytes = Buffer.from(koffi.view(m.addr, size));
  return {
    bytes,
    dirty: (gpa) => ((bytes[Math.floor(gpa / VHOST_LOG_PAGE / 8)] ?? 0) >> (Math.floor(gpa / VHOST_LOG_PAGE) % 8) & 1) === 1,
    clear: () => bytes.fill(0),
  };
}

/** vhost_virtqueue_start(): size, base, addresses, kick and call fds. */
export function startVring(fe: Frontend, mem: GuestMemory, ring: SplitRing, base = 0): void {
  fe.send(VHOST_USER.SET_VRING_NUM, state(ring.index, ring.num));
  fe.send(VHOST_USER.SET_VRING_BASE, state(ring.index, base));
  fe.send(VHOST_USER.SET_VRING_ADDR, vringAddr(mem, ring, false));
  fe.send(VHOST_USER.SET_VRING_KICK, u64(ring.index), [ring.kickFd]);
  fe.send(VHOST_USER.SET_VRING_CALL, u64(ring.index), [ring.callFd]);
}

export function enableVring(fe: Frontend, index: number, enable: boolean): void {
  fe.send(VHOST_USER.SET_VRING_ENABLE, state(index, enable ? 1 : 0));
}

/** vhost_dev_start(): features, memory, every queue (at `bases`, default 0), enable. */
export function devStart(fe: Frontend, opts: {
  features: bigint; offered: bigint; memTable: MemTable; mem: GuestMemory; rings: SplitRing[]; bases?: number[];
}): void {
  const protocolBit = opts.offered & bit(VHOST_USER_F_PROTOCOL_FEATURES);
  fe.setU64(VHOST_USER.SET_FEATURES, opts.features | protocolBit);
  opts.memTable.sync();
  opts.rings.forEach((r, i) => startVring(fe, opts.mem, r, opts.bases?.[i] ?? 0));
  if (protocolBit) for (const r of opts.rings) enableVring(fe, r.index, true);
}

/** vhost_dev_stop(): disable, then GET_VRING_BASE per queue (the backend stops it). Returns the bases. */
export function devStop(fe: Frontend, opts: { offered: bigint; rings: SplitRing[] }): number[] {
  if (opts.offered & bit(VHOST_USER_F_PROTOCOL_FEATURES)) for (const r of opts.rings) enableVring(fe, r.index, false);
  return opts.rings.map((r) => fe.call(VHOST_USER.GET_VRING_BASE, state(r.index, 0)).payload.readUInt32LE(4));
}
