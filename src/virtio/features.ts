// Which features the device offers, and which queue index serves which role
// once features are negotiated (queues are numbered by presence, as the
// Linux driver's init_vqs() does).
import {
  DEFAULT_MESSAGE_VQ_BIT, MESSAGE_VQ_BIT_MAX, MESSAGE_VQ_BIT_MIN, QueueRole,
  VIRTIO_BALLOON_F_DEFLATE_ON_OOM, VIRTIO_BALLOON_F_FREE_PAGE_HINT, VIRTIO_BALLOON_F_MUST_TELL_HOST,
  VIRTIO_BALLOON_F_PAGE_REPORTING, VIRTIO_BALLOON_F_STATS_VQ, VIRTIO_F_VERSION_1,
  VIRTIO_RING_F_EVENT_IDX, VIRTIO_RING_F_INDIRECT_DESC,
} from './constants.js';

export const bit = (n: number): bigint => 1n << BigInt(n);
export const has = (features: bigint, n: number): boolean => (features & bit(n)) !== 0n;

export interface FeatureChoice {
  /** Feature bit of the message virtqueue; null disables the queue. */
  messageVqBit: number | null;
  stats: boolean;
  deflateOnOom: boolean;
  pageReporting: boolean;
}

export const DEFAULT_FEATURE_CHOICE: FeatureChoice = {
  messageVqBit: DEFAULT_MESSAGE_VQ_BIT,
  stats: true,
  deflateOnOom: true,
  pageReporting: true,
};

export function validMessageVqBit(b: number): boolean {
  return Number.isInteger(b) && b >= MESSAGE_VQ_BIT_MIN && b <= MESSAGE_VQ_BIT_MAX;
}

/** The virtio feature bits the device offers. */
export function offeredFeatures(choice: FeatureChoice = DEFAULT_FEATURE_CHOICE): bigint {
  let f = bit(VIRTIO_F_VERSION_1) | bit(VIRTIO_RING_F_INDIRECT_DESC) | bit(VIRTIO_RING_F_EVENT_IDX)
    | bit(VIRTIO_BALLOON_F_MUST_TELL_HOST);
  if (choice.stats) f |= bit(VIRTIO_BALLOON_F_STATS_VQ);
  if (choice.deflateOnOom) f |= bit(VIRTIO_BALLOON_F_DEFLATE_ON_OOM);
  if (choice.pageReporting) f |= bit(VIRTIO_BALLOON_F_PAGE_REPORTING);
  if (choice.messageVqBit !== null) {
    if (!validMessageVqBit(choice.messageVqBit)) {
      throw new RangeError(`message queue feature bit ${choice.messageVqBit} is outside ${MESSAGE_VQ_BIT_MIN}-${MESSAGE_VQ_BIT_MAX}`);
    }
    f |= bit(choice.messageVqBit);
  }
  return f;
}

/** Queue index -> role for the negotiated features. */
export function queueRoles(negotiated: bigint, messageVqBit: number | null): QueueRole[] {
  const roles: QueueRole[] = ['inflate', 'deflate'];
  if (has(negotiated, VIRTIO_BALLOON_F_STATS_VQ)) roles.push('stats');
  if (has(negotiated, VIRTIO_BALLOON_F_FREE_PAGE_HINT)) roles.push('free_page');
  if (has(negotiated, VIRTIO_BALLOON_F_PAGE_REPORTING)) roles.push('reporting');
  if (messageVqBit !== null && has(negotiated, messageVqBit)) roles.push('message');
  return roles;
}

/** Most queues any negotiation can produce (VuDev allocates this many). */
export const MAX_QUEUES = 6;

/** Names of the balloon feature bits present in `features`, for logs. */
export function featureNames(features: bigint, messageVqBit: number | null): string[] {
  const names: Array<[number, string]> = [
    [VIRTIO_BALLOON_F_MUST_TELL_HOST, 'MUST_TELL_HOST'], [VIRTIO_BALLOON_F_STATS_VQ, 'STATS_VQ'],
    [VIRTIO_BALLOON_F_DEFLATE_ON_OOM, 'DEFLATE_ON_OOM'], [VIRTIO_BALLOON_F_FREE_PAGE_HINT, 'FREE_PAGE_HINT'],
    [4, 'PAGE_POISON'], [VIRTIO_BALLOON_F_PAGE_REPORTING, 'PAGE_REPORTING'],
    [VIRTIO_RING_F_INDIRECT_DESC, 'RING_INDIRECT_DESC'], [VIRTIO_RING_F_EVENT_IDX, 'RING_EVENT_IDX'],
    [VIRTIO_F_VERSION_1, 'VERSION_1'],
  ];
  if (messageVqBit !== null) names.push([messageVqBit, 'MESSAGE_VQ']);
  return names.filter(([b]) => has(features, b)).map(([, n]) => n);
}
