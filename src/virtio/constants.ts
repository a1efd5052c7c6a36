// virtio-balloon names and numbers, verbatim from the virtio 1.2 spec
// (section 5.5) and include/uapi/linux/virtio_balloon.h.

export const VIRTIO_ID_BALLOON = 5;

// Feature bits.
export const VIRTIO_BALLOON_F_MUST_TELL_HOST = 0;
export const VIRTIO_BALLOON_F_STATS_VQ = 1;
export const VIRTIO_BALLOON_F_DEFLATE_ON_OOM = 2;
export const VIRTIO_BALLOON_F_FREE_PAGE_HINT = 3;
export const VIRTIO_BALLOON_F_PAGE_POISON = 4;
export const VIRTIO_BALLOON_F_PAGE_REPORTING = 5;
export const VIRTIO_RING_F_INDIRECT_DESC = 28;
export const VIRTIO_RING_F_EVENT_IDX = 29;
export const VIRTIO_F_VERSION_1 = 32;

/**
 * Default feature bit of the message virtqueue. The source design used bit 2,
 * which upstream later gave to DEFLATE_ON_OOM; 23 is the top of the
 * device-specific range (0-23) and unused by any upstream driver.
 */
export const DEFAULT_MESSAGE_VQ_BIT = 23;
/** Device-specific feature bits a message queue may use (0-5 are taken). */
export const MESSAGE_VQ_BIT_MIN = 6;
export const MESSAGE_VQ_BIT_MAX = 23;

/** Messages on the message virtqueue (le32). */
export const VIRTIO_BALLOON_MSG_PRESSURE = 1;

/** Balloon PFNs are always 4 KiB units, whatever the guest page size. */
export const VIRTIO_BALLOON_PFN_SHIFT = 12;
export const BALLOON_PAGE_SIZE = 1 << VIRTIO_BALLOON_PFN_SHIFT;

// struct virtio_balloon_config, little-endian.
export const CONFIG_OFFSET_NUM_PAGES = 0;
export const CONFIG_OFFSET_ACTUAL = 4;
export const CONFIG_OFFSET_FREE_PAGE_HINT_CMD_ID = 8;
export const CONFIG_OFFSET_POISON_VAL = 12;
export const CONFIG_SIZE = 16;

// Memory statistics tags (struct virtio_balloon_stat: le16 tag, le64 val).
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
export const VIRTIO_BALLOON_S_OOM_KILL = 10;
export const VIRTIO_BALLOON_S_ALLOC_STALL = 11;
export const VIRTIO_BALLOON_S_ASYNC_SCAN = 12;
export const VIRTIO_BALLOON_S_DIRECT_SCAN = 13;
export const VIRTIO_BALLOON_S_ASYNC_RECLAIM = 14;
export const VIRTIO_BALLOON_S_DIRECT_RECLAIM = 15;
export const VIRTIO_BALLOON_S_NR = 16;
export const STAT_ENTRY_SIZE = 10;

/** Field names for the stats tags, as the Linux driver names them. */
export const STAT_NAMES = [
  'swap_in', 'swap_out', 'major_faults', 'minor_faults', 'free_memory',
  'total_memory', 'available_memory', 'disk_caches', 'hugetlb_allocations',
  'hugetlb_failures', 'oom_kills', 'alloc_stalls', 'async_scans',
  'direct_scans', 'async_reclaims', 'direct_reclaims',
] as const;
export type StatName = (typeof STAT_NAMES)[number];

/** Queue roles, in the order the Linux driver numbers present queues. */
export type QueueRole = 'inflate' | 'deflate' | 'stats' | 'free_page' | 'reporting' | 'message';

// vhost-user protocol feature bits this backend relies on.
export const VHOST_USER_PROTOCOL_F_REPLY_ACK = 3;
export const VHOST_USER_PROTOCOL_F_SLAVE_REQ = 5;
export const VHOST_USER_PROTOCOL_F_CONFIG = 9;
/** QEMU 8.2's device state transfer (SET_DEVICE_STATE_FD, CHECK_DEVICE_STATE); our 7.2 patch backports it. */
export const VHOST_USER_PROTOCOL_F_DEVICE_STATE = 19;

// VhostUserConfig.flags of SET_CONFIG (QEMU's VhostSetConfigType).
export const VHOST_SET_CONFIG_TYPE_MASTER = 0;
export const VHOST_SET_CONFIG_TYPE_MIGRATION = 1;
