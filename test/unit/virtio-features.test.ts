import { describe, expect, it } from 'vitest';
import { bit, featureNames, offeredFeatures, queueRoles, validMessageVqBit } from '../../src/virtio/features.js';

const F = { MUST_TELL_HOST: 0, STATS_VQ: 1, DEFLATE_ON_OOM: 2, FREE_PAGE_HINT: 3, PAGE_REPORTING: 5, VERSION_1: 32 };

describe('offeredFeatures', () => {
  it('offers the balloon features, VERSION_1 and the message bit by default', () => {
    const f = offeredFeatures();
    for (const b of [F.MUST_TELL_HOST, F.STATS_VQ, F.DEFLATE_ON_OOM, F.PAGE_REPORTING, F.VERSION_1, 23]) {
      expect(f & bit(b), `bit ${b}`).not.toBe(0n);
    }
    expect(f & bit(F.FREE_PAGE_HINT)).toBe(0n);
    expect(f & bit(4)).toBe(0n); // PAGE_POISON: we do not preserve page contents
  });

  it.each([
    [{ messageVqBit: null, stats: false, deflateOnOom: false, pageReporting: false }, [], [1, 2, 5, 23]],
    [{ messageVqBit: 16, stats: true, deflateOnOom: false, pageReporting: true }, [1, 5, 16], [2, 23]],
  ])('honours the choice %o', (choice, present, absent) => {
    const f = offeredFeatures(choice);
    for (const b of present) expect(f & bit(b)).not.toBe(0n);
    for (const b of absent) expect(f & bit(b)).toBe(0n);
  });

  it.each([0, 2, 5, 24, 31, 6.5, -1])('rejects message bit %d', (b) => {
    expect(validMessageVqBit(b)).toBe(false);
    expect(() => offeredFeatures({ messageVqBit: b, stats: true, deflateOnOom: true, pageReporting: true })).toThrow(RangeError);
  });
});

describe('queueRoles numbers present queues like the Linux driver', () => {
  const f = (...bits: number[]) => bits.reduce((acc, b) => acc | bit(b), 0n);
  it.each([
    ['nothing optional', f(F.VERSION_1), 23, ['inflate', 'deflate']],
    ['stats', f(F.STATS_VQ), 23, ['inflate', 'deflate', 'stats']],
    ['reporting without stats', f(F.PAGE_REPORTING), 23, ['inflate', 'deflate', 'reporting']],
    ['stats + reporting + message', f(F.STATS_VQ, F.PAGE_REPORTING, 23), 23, ['inflate', 'deflate', 'stats', 'reporting', 'message']],
    ['free page hint sits before reporting', f(F.STATS_VQ, F.FREE_PAGE_HINT, F.PAGE_REPORTING), 23, ['inflate', 'deflate', 'stats', 'free_page', 'reporting']],
    ['message only', f(23), 23, ['inflate', 'deflate', 'message']],
    ['message bit negotiated but disabled', f(23), null, ['inflate', 'deflate']],
    ['other message bit', f(16), 16, ['inflate', 'deflate', 'message']],
  ] as const)('%s', (_name, negotiated, msgBit, roles) => {
    expect(queueRoles(negotiated, msgBit)).toEqual(roles);
  });
});

describe('featureNames', () => {
  it('names bits verbatim', () => {
    expect(featureNames(bit(0) | bit(1) | bit(23) | bit(32), 23)).toEqual(['MUST_TELL_HOST', 'STATS_VQ', 'VERSION_1', 'MESSAGE_VQ']);
  });
});
