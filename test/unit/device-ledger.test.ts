// BalloonLedger: distinct pages, recovered counts, deflates of pages never
// inflated; and the restart verdicts that decide about pending discards.
import { describe, expect, it } from 'vitest';
import { BalloonLedger } from '../../src/device/ledger.js';
import { GuestContinuity, reconnectVerdict, restartVerdict } from '../../src/device/restart.js';

const r = (pfn: number, count = 1) => ({ pfn, count });
type Op = ['inflate' | 'deflate', number, number] | ['recover', number];

describe('BalloonLedger', () => {
  it.each<[string, Op[], number, number]>([
    ['the same page twice counts once', [['inflate', 5, 1], ['inflate', 5, 1]], 1, 0],
    ['overlapping runs count once', [['inflate', 0, 10], ['inflate', 5, 10]], 15, 0],
    ['deflate of named pages', [['inflate', 0, 10], ['deflate', 0, 4]], 6, 0],
    ['deflate of pages never inflated changes nothing', [['inflate', 0, 10], ['deflate', 100, 4]], 10, 0],
    ['recovered pages are unnamed', [['recover', 300]], 300, 300],
    ['recover counts what it cannot name', [['inflate', 0, 100], ['recover', 300]], 300, 200],
    ['recover below the named pages keeps the names', [['inflate', 0, 100], ['recover', 50]], 100, 0],
    ['unknown deflates draw from the unnamed count', [['recover', 300], ['deflate', 7, 256]], 44, 44],
    ['unnamed count never goes negative', [['recover', 10], ['deflate', 0, 256]], 0, 0],
  ])('%s', (_n, ops, size, unnamed) => {
    const l = new BalloonLedger();
    for (const op of ops) {
      if (op[0] === 'recover') l.recover(op[1]);
      else if (op[0] === 'inflate') l.inflate([r(op[1], op[2])]);
      else l.deflate([r(op[1], op[2])]);
    }
    expect(l.size).toBe(size);
    expect(l.unnamed).toBe(unnamed);
  });

  it('reports what each call did', () => {
    const l = new BalloonLedger();
    expect(l.inflate([r(0, 4), r(2, 4)])).toEqual({ added: 6, duplicate: 2 });
    l.recover(10);
    expect(l.deflate([r(0, 2), r(50, 3), r(60, 5)])).toEqual({ removed: 2, unnamed: 4, unknown: 4 });
    expect(l.size).toBe(4);
  });

  it('matches a model under random operations', () => {
    let seed = 12345;
    const rnd = (n: number) => { seed = (seed * 1103515245 + 12345) % 2 ** 31; return seed % n; };
    const l = new BalloonLedger();
    const model = new Set<number>();
    for (let i = 0; i < 2000; i++) {
      const pfn = rnd(4096);
      const count = 1 + rnd(40);
      if (rnd(2)) {
        const before = model.size;
        const got = l.inflate([r(pfn, count)]);
        for (let p = pfn; p < pfn + count; p++) model.add(p);
        expect(got.added).toBe(model.size - before);
      } else {
        let present = 0;
        for (let p = pfn; p < pfn + count; p++) if (model.delete(p)) present++;
        expect(l.deflate([r(pfn, count)])).toEqual({ removed: present, unnamed: 0, unknown: count - present });
      }
      expect(l.size).toBe(model.size);
    }
  });
});

describe('restart verdicts', () => {
  it.each([
    ['a pause: same index, no reset', { base: 300, resetSeen: false }, 300, 'resume'],
    ['a reset: the ring starts from 0', { base: 300, resetSeen: false }, 0, 'reset'],
    ['a reset QEMU announced with actual = 0', { base: 300, resetSeen: true }, 300, 'reset'],
    ['index 0 at the stop is ambiguous: reset', { base: 0, resetSeen: false }, 0, 'reset'],
    ['another index: not the same rings', { base: 300, resetSeen: false }, 299, 'reset'],
  ] as const)('%s', (_n, stop, start, verdict) => {
    expect(restartVerdict(stop, start)).toBe(verdict);
  });

  it.each([
    [null, 'new-guest'],
    [0, 'new-guest'],
    [1, 'same-guest'],
    [262144, 'same-guest'],
  ] as const)('reconnect with actual %s: %s', (actual, verdict) => {
    expect(reconnectVerdict(actual)).toBe(verdict);
  });
});

describe('GuestContinuity', () => {
  const pend = [{ pfn: 10, count: 4 }];
  type Step = ['attach'] | ['actual', number] | ['stop', number] | ['start', number] | ['close'];
  const kinds = (c: GuestContinuity, steps: Step[]) => {
    const out: string[] = [];
    for (const st of steps) {
      if (st[0] === 'attach') c.attached();
      else if (st[0] === 'close') c.closing(pend);
      else if (st[0] === 'stop') c.queueStopped(true, st[1]);
      else if (st[0] === 'start') out.push(...c.queueStarted(true, st[1]).map((a) => a.kind));
      else {
        const r = c.actualWritten(st[1]);
        if (r) out.push(typeof r === 'string' ? r : r.kind);
      }
    }
    return out;
  };

  it.each<[string, Step[], string[]]>([
    ['a first connection without a report: a new guest', [['attach'], ['start', 0]], ['new-guest']],
    ['a reconnect reporting its balloon: the same guest', [['attach'], ['start', 0], ['close'], ['attach'], ['actual', 500], ['start', 37]], ['new-guest', 'reported', 'same-guest']],
    ['a reconnect reporting 0: a new guest', [['attach'], ['start', 0], ['close'], ['attach'], ['actual', 0], ['start', 0]], ['new-guest', 'reported', 'new-guest']],
    ['a pause: resume', [['attach'], ['start', 0], ['actual', 5], ['stop', 40], ['start', 40]], ['new-guest', 'resume']],
    ['a reset announced by actual = 0: reset at once, nothing more at the start', [['attach'], ['start', 0], ['actual', 5], ['stop', 40], ['actual', 0], ['start', 0]], ['new-guest', 'reset']],
    ['a reset without actual (the guest never wrote one): reset at the start', [['attach'], ['start', 0], ['stop', 40], ['start', 0]], ['new-guest', 'reset']],
    ['a write of actual while running changes nothing', [['attach'], ['start', 0], ['actual', 9]], ['new-guest']],
  ])('%s', (_n, steps, expected) => {
    expect(kinds(new GuestContinuity(), steps)).toEqual(expected);
  });

  it('carried pages go to the same guest, and nowhere after a reset', () => {
    const c = new GuestContinuity();
    kinds(c, [['attach'], ['start', 0], ['close'], ['attach'], ['actual', 50]]);
    expect(c.provisionalBalloon).toBe(50);
    expect(c.carriedPages).toBe(4);
    expect(c.queueStarted(true, 12)).toEqual([{ kind: 'same-guest', actual: 50, carried: pend }]);
    expect(c.provisionalBalloon).toBeNull();
    const d = new GuestContinuity();
    kinds(d, [['attach'], ['start', 0], ['close'], ['attach']]);
    expect(d.queueStarted(true, 0)).toEqual([{ kind: 'new-guest', carried: pend }]);
    expect(d.carriedPages).toBe(0);
  });
});
