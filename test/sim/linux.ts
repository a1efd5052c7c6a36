// What the Linux 6.1 virtio_balloon driver puts on the wire, written down
// independently of src/ so that the simulated guest checks the device rather
// than mirroring it: the features it accepts, how init_vqs() numbers queues,
// struct virtio_balloon_stat and the order update_balloon_stats() fills it.
export const VIRTIO_BALLOON_F_MUST_TELL_HOST = 0;
export const VIRTIO_BALLOON_F_STATS_VQ = 1;
export const VIRTIO_BALLOON_F_DEFLATE_ON_OOM = 2;
export const VIRTIO_BALLOON_F_FREE_PAGE_HINT = 3;
export const VIRTIO_BALLOON_F_PAGE_POISON = 4;
export const VIRTIO_BALLOON_F_REPORTING = 5;
export const VIRTIO_RING_F_INDIRECT_DESC = 28;
export const VIRTIO_RING_F_EVENT_IDX = 29;
export const VIRTIO_F_VERSION_1 = 32;
/** The seed design's message queue bit; our device's default (src/virtio/constants.ts agrees). */
export const DEFAULT_MESSAGE_VQ_BIT = 23;

/** VIRTIO_BALLOON_ARRAY_PFNS_MAX: PFNs per inflate/deflate buffer. */
export const VIRTIO_BALLOON_ARRAY_PFNS_MAX = 256;
/** VIRTIO_BALLOON_OOM_NR_PAGES (oom_pages module parameter default). */
export const VIRTIO_BALLOON_OOM_NR_PAGES = 256;
/** PAGE_REPORTING_CAPACITY: scatterlist entries per report. */
export const PAGE_REPORTING_CAPACITY = 32;
/** pageblock_order on x86-64 (9): the smallest reported free block, 2 MiB. */
export const PAGE_REPORTING_MIN_BYTES = 2 << 20;

export const bit = (n: number): bigint => 1n << BigInt(n);

/**
 * Features a Debian 6.1 guest accepts: the driver's feature table minus
 * PAGE_POISON (virtballoon_validate() clears it unless init_on_free or page
 * poisoning is on, which Debian's defaults are not) plus the split-ring
 * transport bits vring_transport_features() keeps. The sim has no packed ring.
 */
export const LINUX_6_1_FEATURES = bit(VIRTIO_BALLOON_F_MUST_TELL_HOST) | bit(VIRTIO_BALLOON_F_STATS_VQ)
  | bit(VIRTIO_BALLOON_F_DEFLATE_ON_OOM) | bit(VIRTIO_BALLOON_F_FREE_PAGE_HINT) | bit(VIRTIO_BALLOON_F_REPORTING)
  | bit(VIRTIO_RING_F_INDIRECT_DESC) | bit(VIRTIO_RING_F_EVENT_IDX) | bit(VIRTIO_F_VERSION_1);

export type Role = 'inflate' | 'deflate' | 'stats' | 'free_page' | 'reporting' | 'message';

/**
 * Queue index -> role. init_vqs() passes names[] with NULL for absent
 * queues and virtio_find_vqs() numbers only the present ones; the seed's
 * message queue comes after every standard queue.
 */
export function queueOrder(features: bigint, messageVqBit: number | null): Role[] {
  const has = (b: number) => (features & bit(b)) !== 0n;
  const roles: Role[] = ['inflate', 'deflate'];
  if (has(VIRTIO_BALLOON_F_STATS_VQ)) roles.push('stats');
  if (has(VIRTIO_BALLOON_F_FREE_PAGE_HINT)) roles.push('free_page');
  if (has(VIRTIO_BALLOON_F_REPORTING)) roles.push('reporting');
  if (messageVqBit !== null && has(messageVqBit)) roles.push('message');
  return roles;
}

// struct virtio_balloon_stat { __virtio16 tag; __virtio64 val; } __attribute__((packed));
export const VIRTIO_BALLOON_S_SWAP_IN = 0;
export const VIRTIO_BALLOON_S_SWAP_OUT = 1;
export const VIRTIO_BALLOON_S_MAJFLT = 2;
export const VIRTIO_BALLOON_S_MINFLT = 3;
export const VIRTIO_BALLOON_S_MEMFREE = 4;
export const VIRTIO_BALLOON_S_MEMTOT = 5;
export const VIRTIO_BALLOON_S_AVAIL = 6;
export const VIRTIO_BALLOON_S_CACHES = 7;
export const VIRTIO_BALLOON_S_HTLB_PGALLOC = 8;
export const VIRTIO_BALLOON_S_HTLB_PGFAIL = 9;
export const STAT_SIZE = 10;

export type StatEntries = Array<[number, number | bigint]>;

export function encodeStats(entries: StatEntries): Buffer {
  const b = Buffer.alloc(STAT_SIZE * entries.length);
  entries.forEach(([tag, val], i) => {
    b.writeUInt16LE(tag, STAT_SIZE * i);
    b.writeBigUInt64LE(BigInt(val), STAT_SIZE * i + 2);
  });
  return b;
}

/** A guest's memory figures, in bytes and events. */
export interface GuestVm {
  totalBytes: number;
  usedBytes: number;
  cacheBytes: number;
  balloonBytes: number;
  deflateOnOom: boolean;
  swapInBytes: number;
  swapOutBytes: number;
  majorFaults: number;
  minorFaults: number;
}

/**
 * update_balloon_stats() on a CONFIG_VM_EVENT_COUNTERS + CONFIG_HUGETLB_PAGE
 * kernel: 10 entries in this order. Without DEFLATE_ON_OOM, fill_balloon()
 * takes ballooned pages out of totalram (adjust_managed_page_count()).
 */
export function linuxStats(vm: GuestVm): StatEntries {
  const total = vm.totalBytes - (vm.deflateOnOom ? 0 : vm.balloonBytes);
  const free = Math.max(0, vm.totalBytes - vm.usedBytes - vm.cacheBytes - vm.balloonBytes);
  return [
    [VIRTIO_BALLOON_S_SWAP_IN, vm.swapInBytes],
    [VIRTIO_BALLOON_S_SWAP_OUT, vm.swapOutBytes],
    [VIRTIO_BALLOON_S_MAJFLT, vm.majorFaults],
    [VIRTIO_BALLOON_S_MINFLT, vm.minorFaults],
    [VIRTIO_BALLOON_S_HTLB_PGALLOC, 0],
    [VIRTIO_BALLOON_S_HTLB_PGFAIL, 0],
    [VIRTIO_BALLOON_S_MEMFREE, free],
    [VIRTIO_BALLOON_S_MEMTOT, total],
    [VIRTIO_BALLOON_S_AVAIL, free + vm.cacheBytes],
    [VIRTIO_BALLOON_S_CACHES, vm.cacheBytes],
  ];
}

// struct virtio_balloon_config: le32 num_pages, actual, free_page_hint_cmd_id, poison_val.
export const CONFIG_SIZE = 16;
export const CONFIG_OFFSET_ACTUAL = 4;

export interface SimConfig {
  num_pages: number;
  actual: number;
  free_page_hint_cmd_id: number;
  poison_val: number;
}

export function decodeConfigSpace(b: Buffer): SimConfig {
  return {
    num_pages: b.readUInt32LE(0), actual: b.readUInt32LE(4),
    free_page_hint_cmd_id: b.readUInt32LE(8), poison_val: b.readUInt32LE(12),
  };
}
