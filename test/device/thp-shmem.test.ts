// Guest RAM on shmem with transparent huge pages (shmem_enabled=always), the
// simulated guest's memfd, real daemon: --shmem-huge-discard any (default)
// frees every ballooned 4 KiB page and splits a huge page covered in part;
// whole frees only whole huge pages and splits none. The figures are printed.
import { readFileSync, writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DaemonProcess } from '../sim/daemon.js';
import { SimGuest } from '../sim/driver.js';
import { PAGE } from '../sim/guest-memory.js';
import { skipUnless, SKIP } from '../skip.js';

const MiB = 2 ** 20;
const PER = (2 * MiB) / PAGE;
const KNOB = '/sys/kernel/mm/transparent_hugepage/shmem_enabled';
const shmemHugeMiB = () => Number(/^ShmemHugePages:\s+(\d+)/m.exec(readFileSync('/proc/meminfo', 'utf8'))![1]) / 1024;
const isRoot = process.getuid?.() === 0;

async function settle(read: () => number, ms = 3000): Promise<number> {
  let last = read();
  for (const end = Date.now() + ms; Date.now() < end;) {
    await new Promise((r) => setTimeout(r, 200));
    const now = read();
    if (now === last) return now;
    last = now;
  }
  return last;
}

skipUnless(isRoot, SKIP.notRoot).describe('guest RAM on shmem with transparent huge pages', () => {
  let knob = '';
  const figures: Record<string, unknown> = {};

  beforeAll(() => {
    knob = /\[([^\]]+)\]/.exec(readFileSync(KNOB, 'utf8'))![1]!;
    writeFileSync(KNOB, 'always');
  });
  afterAll(() => {
    writeFileSync(KNOB, knob);
    console.log(`THP shmem: ${JSON.stringify(figures)}`);
  });

  it.each([
    ['any', 'every ballooned 4 KiB page is freed; the half-ballooned huge pages are split', true],
    ['whole', 'only the whole huge pages are freed; none is split', false],
  ] as const)('--shmem-huge-discard %s: %s', async (mode, _what, splits) => {
    const daemon = await DaemonProcess.start(['--stats-interval', '0', '--no-page-reporting', '--shmem-huge-discard', mode]);
    const guest = await SimGuest.start({ socketPath: daemon.socketPath, ramBytes: 96 * MiB });
    try {
      guest.mem.touch(0, 64 * MiB); // 32 huge pages
      const huge0 = await settle(shmemHugeMiB);
      expect(huge0).toBeGreaterThanOrEqual(60); // the memfd is on huge pages
      const alloc0 = guest.mem.allocatedBytes();
      // Huge pages 0-7 wholly, 8-15 every other 4 KiB page: 16 + 8 MiB ballooned.
      const pfns: number[] = [];
      for (let p = 0; p < 8 * PER; p++) pfns.push(p);
      for (let p = 8 * PER; p < 16 * PER; p += 2) pfns.push(p);
      await guest.tellHost('inflate', pfns);
      const alloc1 = await settle(() => guest.mem.allocatedBytes());
      const huge1 = await settle(shmemHugeMiB);
      const freedMiB = (alloc0 - alloc1) / MiB;
      const hugeLostMiB = huge0 - huge1;
      figures[mode] = { balloonedMiB: 24, freedMiB, shmemHugePagesLostMiB: hugeLostMiB };
      if (splits) {
        expect(freedMiB).toBeCloseTo(24, 0); // all of it
        expect(hugeLostMiB).toBeGreaterThanOrEqual(30); // 8 freed whole + 8 split
      } else {
        expect(freedMiB).toBeCloseTo(16, 0); // the whole ones only
        expect(hugeLostMiB).toBeCloseTo(16, 0); // those, freed; the partial ones stay huge
      }
      // Data of pages not ballooned is intact either way.
      for (let p = 8 * PER + 1; p < 16 * PER; p += 2) expect(guest.mem.bytes[p * PAGE]).toBe(0xa5);
    } finally {
      guest.close();
      await daemon.stop();
    }
  }, 60_000);
});
