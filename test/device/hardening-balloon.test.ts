// What happens to the balloon and to pages acknowledged but not yet
// discarded across a reset, a VM pause, a disconnect and a new guest; and
// accounting that counts distinct pages (src/device/restart.ts, ledger.ts).
import { afterEach, describe, expect, it } from 'vitest';
import { ControlClient } from '../../src/control/client.js';
import type { DaemonStatus } from '../../src/control/status.js';
import { DaemonProcess } from '../sim/daemon.js';
import { sleep, until } from '../sim/wait.js';
import { SimGuest } from '../sim/driver.js';
import { PAGE } from '../sim/guest-memory.js';

const MiB = 1 << 20;
const GiB = 1024 * MiB;
let daemon: DaemonProcess | undefined;
let guest: SimGuest | undefined;

afterEach(async () => {
  guest?.close();
  guest = undefined;
  if (daemon) expect(await daemon.stop(), 'daemon exits cleanly').toBe(0);
  daemon = undefined;
});


const status = (d: DaemonProcess): Promise<DaemonStatus> => d.status();

async function control(d: DaemonProcess, req: Record<string, unknown>): Promise<unknown> {
  const c = await ControlClient.connect(d.controlPath);
  try {
    return await c.request(req as never);
  } finally {
    c.close();
  }
}

/** A fixed permutation of [lo, lo + n): scattered PFNs make the daemon collect them into one job. */
function shuffled(lo: number, n: number): number[] {
  const a = Array.from({ length: n }, (_, i) => lo + i);
  for (let i = n - 1; i > 0; i--) {
    const j = (i * 7919 + 13) % (i + 1);
    [a[i], a[j]] = [a[j]!, a[i]!];
  }
  return a;
}

const backedPages = (g: SimGuest, pfns: number[]) => pfns.filter((p) => g.mem.isBacked(p * PAGE, PAGE)).length;

describe('a reset while 1 GiB waits to be discarded', () => {
  it('discards nothing after GET_VRING_BASE: a pattern written right after the reply survives on every page', async () => {
    daemon = await DaemonProcess.start(['--stats-interval', '0']);
    for (let trial = 0; trial < 3; trial++) {
      guest = await SimGuest.start({ socketPath: daemon.socketPath, ramBytes: GiB + 64 * MiB });
      guest.mem.touch(0, guest.mem.usableEnd);
      const pfns = shuffled((16 * MiB) / PAGE, GiB / PAGE);
      // Scattered PFNs go to the thread as one 1 GiB job at the last buffer.
      await guest.inflate(pfns.length, { pfns, updateSize: 'end' });
      guest.stop(); // vhost_dev_stop(): the reply to GET_VRING_BASE is back
      // Right after the reply: the guest owns every page again. Top down,
      // since the thread works bottom up.
      for (let i = pfns.length - 1; i >= 0; i -= 1) guest.mem.bytes.fill(0x77, pfns[i]! * PAGE, (pfns[i]! + 1) * PAGE);
      guest.writeActual(0); // QEMU's reset handler (vhost_user_balloon_reset)
      await sleep(1500);
      const lost = pfns.filter((p) => guest!.mem.bytes[p * PAGE] !== 0x77 || guest!.mem.bytes[(p + 1) * PAGE - 1] !== 0x77);
      expect(lost.length, `trial ${trial}: pages that lost the pattern (discarded after the reply)`).toBe(0);
      const st = await status(daemon);
      expect(st.balloonBytes, 'a reset empties the balloon').toBe(0);
      guest.close();
      guest = undefined;
      await daemon.waitForLog((l) => l.msg === 'frontend disconnected' && daemon!.find((m) => m.msg === 'frontend disconnected').length > trial);
    }
  });
});

describe('a VM pause with discards pending', () => {
  it('discards nothing while paused and everything once the same rings resume', async () => {
    daemon = await DaemonProcess.start(['--stats-interval', '0']);
    guest = await SimGuest.start({ socketPath: daemon.socketPath, ramBytes: 512 * MiB });
    guest.mem.touch(0, guest.mem.usableEnd);
    const touched = guest.mem.allocatedBytes();
    const pfns = shuffled((16 * MiB) / PAGE, (256 * MiB) / PAGE);
    await guest.inflate(pfns.length, { pfns });
    const bases = guest.pause();
    const atPause = guest.mem.allocatedBytes();
    await sleep(1500); // longer than the hand-over's 1 s limit
    expect(guest.mem.allocatedBytes(), 'no discard while the queues are stopped').toBe(atPause);
    expect(atPause, 'the job was still pending at the pause').toBeGreaterThan(touched - 256 * MiB);
    expect((await status(daemon)).balloonBytes).toBe(256 * MiB);
    guest.resume(bases);
    expect(await until(() => guest!.mem.allocatedBytes() <= touched - 256 * MiB), 'all ballooned pages freed after the pause').toBe(true);
  });
});

describe('a frontend that goes away with acknowledged inflates', () => {
  it('the same guest reconnecting (it reports actual): every acknowledged page is freed', async () => {
    daemon = await DaemonProcess.start(['--stats-interval', '0']);
    guest = await SimGuest.start({ socketPath: daemon.socketPath, ramBytes: 64 * MiB });
    guest.mem.touch(0, guest.mem.usableEnd);
    const all: number[] = [];
    for (let i = 0; i < 20; i++) {
      const pfns = shuffled(1000 + 256 * i, 256);
      await guest.inflate(256, { pfns }); // acknowledged, actual written
      all.push(...pfns);
      guest.reconnect(); // the connection breaks at once; QEMU comes back with actual
    }
    expect(await until(() => backedPages(guest!, all) === 0), `acknowledged pages still backed: ${backedPages(guest, all)} of ${all.length}`).toBe(true);
    const st = await status(daemon);
    expect(st.balloonBytes).toBe(all.length * PAGE);
    expect(guest.mem.backedBytes(0, 1000 * PAGE), 'pages outside the balloon keep their data').toBe(1000 * PAGE);
  });

  it('a connection that never reports a balloon (new or reset guest): the last one\'s pages keep their data', async () => {
    daemon = await DaemonProcess.start(['--stats-interval', '0']);
    guest = await SimGuest.start({ socketPath: daemon.socketPath, ramBytes: 64 * MiB });
    guest.mem.touch(0, guest.mem.usableEnd);
    const pfns = shuffled(2000, 4096);
    await guest.inflate(pfns.length, { pfns, updateSize: 'end' });
    const pending = pfns.filter((p) => guest!.mem.isBacked(p * PAGE, PAGE));
    guest.lastActual = 0; // as after QEMU's reset while disconnected
    guest.reconnect({ sendActual: false });
    for (const p of pending) guest.mem.bytes.fill(0x3c, p * PAGE, (p + 1) * PAGE); // the guest uses them again
    await sleep(1500);
    expect(pending.filter((p) => guest!.mem.bytes[p * PAGE] !== 0x3c)).toEqual([]);
    expect((await status(daemon)).balloonBytes).toBe(0);
  });
});

describe('the next frontend starts from its own balloon', () => {
  it('inflate 1000 pages, disconnect; a new guest inflates 10: the status shows 10, no target, no hold', async () => {
    daemon = await DaemonProcess.start(['--stats-interval', '0']);
    guest = await SimGuest.start({ socketPath: daemon.socketPath, ramBytes: 64 * MiB });
    await control(daemon, { op: 'set-target', value: `${(1000 * PAGE) / 1024}K` });
    await guest.followTarget();
    expect((await status(daemon)).balloonBytes).toBe(1000 * PAGE);
    guest.close();
    await daemon.waitForLog((l) => l.msg === 'frontend disconnected');
    guest = await SimGuest.start({ socketPath: daemon.socketPath, ramBytes: 64 * MiB });
    await guest.inflate(10);
    const st = await status(daemon);
    expect(st.balloonBytes).toBe(10 * PAGE);
    expect(st.targetBytes).toBe(0);
    expect(st.mode).toBe('auto');
    expect(st.hold).toBeNull();
    expect(guest.readConfig().num_pages).toBe(0);
  });

  it('the same guest reconnecting keeps its balloon and its manual hold', async () => {
    daemon = await DaemonProcess.start(['--stats-interval', '0']);
    guest = await SimGuest.start({ socketPath: daemon.socketPath, ramBytes: 64 * MiB });
    await control(daemon, { op: 'set-target', value: '8M' });
    await guest.followTarget();
    guest.reconnect();
    await sleep(100);
    const st = await status(daemon);
    expect(st).toMatchObject({ balloonBytes: 8 * MiB, targetBytes: 8 * MiB, mode: 'manual' });
    await guest.deflate(256); // its pages are known by count only: a deflate draws on them
    expect((await status(daemon)).balloonBytes).toBe(7 * MiB);
  });
});

describe('accounting counts distinct pages', () => {
  it('the same PFN inflated twice is one page; a deflate of a page never inflated is bad input, not OOM', async () => {
    daemon = await DaemonProcess.start(['--stats-interval', '0']);
    guest = await SimGuest.start({ socketPath: daemon.socketPath, ramBytes: 64 * MiB });
    await guest.tellHost('inflate', [5]);
    await guest.tellHost('inflate', [5, 6]);
    let st = await status(daemon);
    expect(st.balloonBytes).toBe(2 * PAGE);
    expect(st.counters.inflatedPages).toBe(2);
    expect(st.counters.badInput.pfn_already_ballooned).toBe(1);
    await guest.tellHost('deflate', [9000, 9001]);
    st = await status(daemon);
    expect(st.balloonBytes).toBe(2 * PAGE);
    expect(st.counters.deflatedPages).toBe(0);
    expect(st.counters.guestPressure['deflate-on-oom']).toBe(0);
    expect(st.counters.badInput.pfn_not_ballooned).toBe(2);
    expect(daemon.find((l) => l.rule === 'oom-cancel' || /deflate-on-oom/.test(String(l.event ?? '')))).toEqual([]);
  });

  it('a report chain longer than the device reads is bad input; unaligned ranges are bad input, not failed discards', async () => {
    daemon = await DaemonProcess.start(['--stats-interval', '0']);
    guest = await SimGuest.start({ socketPath: daemon.socketPath, ramBytes: 64 * MiB });
    guest.mem.touch(0, guest.mem.usableEnd);
    const long = Array.from({ length: 70 }, (_, i) => ({ gpa: 4 * MiB + i * 64 * 1024, len: 64 * 1024, write: true }));
    await guest.ring('reporting').waitFor(guest.postRaw('reporting', long));
    await guest.ring('reporting').waitFor(guest.postRaw('reporting', [{ gpa: 20 * MiB + 100, len: PAGE, write: true }]));
    const st = await status(daemon);
    expect(st.counters.badInput.oversized_report).toBe(1);
    expect(st.counters.badInput.reporting_unaligned).toBe(1);
    expect(st.counters.badInput.discard_failed).toBeUndefined();
    expect(st.counters.reportedPages).toBe((64 * 64 * 1024) / PAGE); // the entries it read
    expect(guest.mem.backedBytes(20 * MiB, 2 * PAGE)).toBe(2 * PAGE);
  });
});
