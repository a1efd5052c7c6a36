// The guest swap disk: QEMU arguments, the kernel parameter that makes the
// guest's init use it, and the guest's `VUB vmstat` swap counters.
import { describe, expect, it } from 'vitest';
import { buildQemuArgs, guestSwap, kernelCmdline, parseVubLine } from '../../lab/vm/index.js';

const base = {
  kernel: '/k', initrd: '/i', memMiB: 256, accel: { kind: 'tcg' } as const, qmpSocket: '/q.sock', balloon: { kind: 'stock' } as const,
};
const valueAfter = (args: string[], flag: string) => args.filter((_, i) => args[i - 1] === flag);

describe('swap disk arguments', () => {
  it('no disk: no drive and no vub.swap', () => {
    const args = buildQemuArgs(base);
    expect(valueAfter(args, '-drive')).toEqual([]);
    expect(valueAfter(args, '-append')[0]).not.toContain('vub.swap');
  });
  it('a disk: raw virtio-blk with O_DIRECT (cache=none), and vub.swap=1 for the init', () => {
    const args = buildQemuArgs({ ...base, swapDisk: '/var/tmp/a,b.swap' });
    expect(valueAfter(args, '-drive')).toEqual(['file=/var/tmp/a,,b.swap,if=none,id=swap0,format=raw,cache=none,aio=threads,discard=unmap']);
    expect(valueAfter(args, '-device')).toContain('virtio-blk-pci,drive=swap0');
    expect(valueAfter(args, '-append')[0]?.split(' ')).toContain('vub.swap=1');
  });
  it.each([[{}, false], [{ swap: false }, false], [{ swap: true }, true]] as const)('kernelCmdline(%j) has vub.swap=1: %s', (g, want) => {
    expect(kernelCmdline(g).split(' ').includes('vub.swap=1')).toBe(want);
  });
});

describe('guestSwap', () => {
  const cases: Array<[string, string, ReturnType<typeof guestSwap>]> = [
    ['counters', 'VUB vmstat pswpin=12 pswpout=3400 up=20.5', { pswpin: 12, pswpout: 3400, up: 20.5 }],
    ['zero', 'VUB vmstat pswpin=0 pswpout=0 up=1', { pswpin: 0, pswpout: 0, up: 1 }],
    ['another line type', 'VUB meminfo MemTotal=1 MemFree=1 MemAvailable=1 AnonPages=1 Shmem=1 up=1', undefined],
    ['a counter missing', 'VUB vmstat pswpin=1 up=1', undefined],
    ['not a number', 'VUB vmstat pswpin=x pswpout=1 up=1', undefined],
  ];
  it.each(cases)('%s', (_n, text, want) => {
    const e = parseVubLine(text);
    if (!e) throw new Error(`not a VUB line: ${text}`);
    expect(guestSwap(e)).toEqual(want);
  });
});
