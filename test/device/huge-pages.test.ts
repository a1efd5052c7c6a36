// Guest RAM on a 2 MiB hugetlbfs memfd, simulated guest, real daemon: a huge
// page is freed once every 4 KiB page of it is ballooned, across elements
// and in any order; a partial one keeps all its data; a deflate of part of a
// freed one gives the guest zeroed memory; free page reporting frees only
// the whole huge pages of a report.
import { readFileSync, writeFileSync } from 'node:fs';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DaemonProcess } from '../sim/daemon.js';
import { SimGuest } from '../sim/driver.js';
import { PAGE } from '../sim/guest-memory.js';
import { skipUnless, SKIP } from '../skip.js';

const MiB = 2 ** 20;
const HUGE = 2 * MiB;
const PER = HUGE / PAGE; // 512 balloon pages per huge page
const NR = '/proc/sys/vm/nr_hugepages';
const hugeFree = () => Number(/^HugePages_Free:\s+(\d+)/m.exec(readFileSync('/proc/meminfo', 'utf8'))![1]);
const isRoot = process.getuid?.() === 0;

/** pfns of huge pages [first, first + n), shuffled (a fixed seed: the order is part of the test). */
function shuffledPfns(first: number, n: number, seed = 7): number[] {
  const out: number[] = [];
  for (let p = first * PER; p < (first + n) * PER; p++) out.push(p);
  let s = seed;
  for (let i = out.length - 1; i > 0; i--) {
    s = (s * 1103515245 + 12345) & 0x7fffffff;
    const j = s % (i + 1);
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

async function until(cond: () => boolean, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

skipUnless(isRoot, SKIP.notRoot).describe('guest RAM on 2 MiB huge pages (hugetlbfs memfd)', () => {
  let nrBefore = 0;
  let daemon: DaemonProcess;
  let guest: SimGuest;
  const allocated = () => guest.mem.allocatedBytes();

  beforeAll(async () => {
    nrBefore = Number(readFileSync(NR, 'utf8'));
    writeFileSync(NR, String(nrBefore + 40)); // 80 MiB: the 64 MiB guest and some slack
    if (hugeFree() < 32) throw new Error(`the kernel gave only ${hugeFree()} free 2 MiB pages (nr_hugepages ${readFileSync(NR, 'utf8').trim()})`);
    daemon = await DaemonProcess.start(['--stats-interval', '0']);
    guest = await SimGuest.start({ socketPath: daemon.socketPath, ramBytes: 64 * MiB, hugePageBytes: HUGE });
    await daemon.waitForLog((l) => typeof l.msg === 'string' && l.msg.includes('2 MiB huge pages'));
  });

  afterAll(async () => {
    guest?.close();
    await daemon?.stop();
    writeFileSync(NR, String(nrBefore));
  });

  it('pages of 8 huge pages inflated in random order over 16 elements: 7 whole ones are freed, the one missing a page keeps all its data', async () => {
    guest.mem.touch(0, 32 * MiB);
    expect(allocated()).toBeGreaterThanOrEqual(32 * MiB);
    const before = allocated();
    const withheld = 8 * PER - 1; // the last page of huge page 7
    await guest.tellHost('inflate', shuffledPfns(0, 8).filter((p) => p !== withheld));
    await until(() => before - allocated() >= 7 * HUGE, 3000, '7 huge pages freed');
    await new Promise((r) => setTimeout(r, 300)); // nothing more follows
    expect(before - allocated()).toBe(7 * HUGE);
    // Huge page 7: 511 of its pages ballooned, not freed: every page still holds what the guest wrote.
    for (let p = 7 * PER; p < 8 * PER; p++) expect(guest.mem.bytes[p * PAGE]).toBe(0xa5);
    // The last page comes: the huge page is whole, and freed.
    await guest.tellHost('inflate', [withheld]);
    await until(() => before - allocated() >= 8 * HUGE, 3000, 'huge page 7 freed');
    // Memory the guest did not balloon is untouched.
    for (let p = 8 * PER; p < 16 * PER; p += 64) expect(guest.mem.bytes[p * PAGE]).toBe(0xa5);
    const log = daemon.find((l) => l.msg === 'discard_failed');
    expect(log).toEqual([]);
  });

  it('a deflate of part of a freed huge page: the guest gets zeroed memory back; the rest of its pages stay ballooned', async () => {
    const before = allocated();
    const page = 3 * PER + 5;
    await guest.tellHost('deflate', [page]);
    guest.mem.bytes[page * PAGE + 1] = 0x5a; // the guest uses its page: a new huge page comes
    expect(allocated() - before).toBe(HUGE);
    expect(guest.mem.bytes[page * PAGE]).toBe(0); // zeroed, as after any discard
    // Ballooned again: whole again, freed again.
    await guest.tellHost('inflate', [page]);
    await until(() => allocated() === before, 3000, 'huge page 3 freed again');
  });

  it('free page reporting frees the whole huge pages of a report and leaves a partial one as it is', async () => {
    guest.mem.touch(16 * MiB, 8 * MiB); // huge pages 8-11
    const before = allocated();
    // [17 MiB, 22 MiB): the second half of page 8, pages 9 and 10, none of 11.
    await guest.reportFree([{ gpa: 17 * MiB, len: 5 * MiB }]);
    await until(() => before - allocated() >= 2 * HUGE, 3000, 'two huge pages freed');
    expect(before - allocated()).toBe(2 * HUGE);
    // Page 8, reported in part, was not touched: its content stays.
    for (let p = 8 * PER; p < 9 * PER; p += 16) expect(guest.mem.bytes[p * PAGE]).toBe(0xa5);
    for (let p = 11 * PER; p < 12 * PER; p += 16) expect(guest.mem.bytes[p * PAGE]).toBe(0xa5);
  });

  it('random inflate and deflate orders, against a model: a huge page is freed exactly when all of it is ballooned; every page not ballooned keeps its content', async () => {
    const HP = 8; // huge pages 16-23 (32-48 MiB), below the reserved top
    const first = 16;
    const pfnsOf = (h: number) => Array.from({ length: PER }, (_, i) => (first + h) * PER + i);
    const op = fc.oneof(
      fc.record({ kind: fc.constant('inflate' as const), huge: fc.integer({ min: 0, max: HP - 1 }), share: fc.constantFrom(1, 0.5, 0.99), seed: fc.integer() }),
      fc.record({ kind: fc.constant('deflate' as const), huge: fc.integer({ min: 0, max: HP - 1 }), share: fc.constantFrom(1, 0.01, 0.3), seed: fc.integer() }),
    );
    const pick = (list: number[], share: number, seed: number) => {
      let s = seed >>> 0;
      return list.filter(() => ((s = (s * 1103515245 + 12345) >>> 0) % 1000) / 1000 < share);
    };
    await fc.assert(fc.asyncProperty(fc.array(op, { minLength: 1, maxLength: 10 }), async (ops) => {
      // Start: every page of the test's huge pages backed and marked, nothing ballooned.
      const ballooned = new Set<number>();
      const value = new Map<number, number>();
      let stamp = 1;
      for (let h = 0; h < HP; h++) for (const p of pfnsOf(h)) { guest.mem.bytes[p * PAGE] = stamp; value.set(p, stamp); }
      const base = allocated() - HP * HUGE; // everything outside the test's huge pages
      const whole = () => Array.from({ length: HP }, (_, h) => pfnsOf(h).every((p) => ballooned.has(p))).filter(Boolean).length;
      try {
        for (const o of ops) {
          const pages = pfnsOf(o.huge);
          if (o.kind === 'inflate') {
            const add = pick(pages.filter((p) => !ballooned.has(p)), o.share, o.seed);
            if (add.length) await guest.tellHost('inflate', add);
            for (const p of add) ballooned.add(p);
          } else {
            const back = pick(pages.filter((p) => ballooned.has(p)), o.share, o.seed);
            if (back.length) await guest.tellHost('deflate', back);
            stamp = (stamp % 250) + 2;
            for (const p of back) { ballooned.delete(p); guest.mem.bytes[p * PAGE] = stamp; value.set(p, stamp); } // the guest uses its pages again
          }
          const want = base + (HP - whole()) * HUGE;
          await until(() => allocated() === want, 3000, `allocated ${want / MiB} MiB (${whole()} whole huge pages ballooned), have ${allocated() / MiB}`);
          for (let h = 0; h < HP; h++) for (const p of pfnsOf(h)) if (!ballooned.has(p)) expect(guest.mem.bytes[p * PAGE]).toBe(value.get(p));
        }
      } finally {
        const all = [...ballooned];
        if (all.length) await guest.tellHost('deflate', all);
      }
    }), { numRuns: 20, seed: 16 });
  }, 120_000);
});

const GIANT = '/sys/kernel/mm/hugepages/hugepages-1048576kB/nr_hugepages';
const GiB = 2 ** 30;

skipUnless(isRoot, SKIP.notRoot).describe('guest RAM on 1 GiB huge pages (hugetlbfs memfd)', () => {
  let before = 0;
  let daemon: DaemonProcess;
  let guest: SimGuest;

  beforeAll(async () => {
    before = Number(readFileSync(GIANT, 'utf8'));
    writeFileSync(GIANT, String(before + 2));
    if (Number(readFileSync(GIANT, 'utf8')) < before + 2) throw new Error('the kernel could not reserve two 1 GiB pages');
    daemon = await DaemonProcess.start(['--stats-interval', '0', '--no-page-reporting']);
    guest = await SimGuest.start({ socketPath: daemon.socketPath, ramBytes: 2 * GiB, hugePageBytes: GiB });
    await daemon.waitForLog((l) => typeof l.msg === 'string' && l.msg.includes('1024 MiB huge pages'));
  }, 60_000);

  afterAll(async () => {
    guest?.close();
    await daemon?.stop();
    writeFileSync(GIANT, String(before));
  });

  it('a 1 GiB page is freed (on the event loop, in one call) once all of its 262 144 pages are ballooned, not before', async () => {
    guest.mem.touch(0, 64 * MiB); // the first huge page is allocated (the second holds the rings)
    const start = guest.mem.allocatedBytes();
    expect(start).toBe(2 * GiB);
    const pages = Array.from({ length: GiB / PAGE }, (_, i) => i);
    await guest.tellHost('inflate', pages.slice(0, -1));
    await new Promise((r) => setTimeout(r, 300));
    expect(guest.mem.allocatedBytes()).toBe(start); // one page short: nothing freed
    expect(guest.mem.bytes[0]).toBe(0xa5);
    await guest.tellHost('inflate', pages.slice(-1));
    await until(() => guest.mem.allocatedBytes() === start - GiB, 3000, 'the 1 GiB page freed');
    expect(daemon.find((l) => l.msg === 'discard_failed')).toEqual([]);
  }, 120_000);
});
