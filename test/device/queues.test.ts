// Stats, message and free page reporting queues against the real daemon.
import { afterEach, describe, expect, it } from 'vitest';
import { ControlClient } from '../../src/control/client.js';
import type { DaemonStatus } from '../../src/control/status.js';
import { DaemonProcess } from '../sim/daemon.js';
import { SimGuest } from '../sim/driver.js';

const MiB = 1 << 20;
let daemon: DaemonProcess | undefined;
let guest: SimGuest | undefined;

afterEach(async () => {
  guest?.close();
  guest = undefined;
  if (daemon) expect(await daemon.stop()).toBe(0);
  daemon = undefined;
});

const status = (d: DaemonProcess): Promise<DaemonStatus> => d.status();

describe('stats queue', () => {
  it('keeps the primed buffer, asks again every interval and parses every tag', async () => {
    daemon = await DaemonProcess.start(['--stats-interval', '0.1']);
    let avail = 100 * MiB;
    guest = await SimGuest.start({
      socketPath: daemon.socketPath, ramBytes: 256 * MiB,
      stats: () => [[0, 1], [1, 2], [2, 3], [3, 4], [4, 5 * MiB], [5, 256 * MiB], [6, avail], [7, 8], [8, 9], [9, 10],
        [10, 11], [11, 12], [12, 13], [13, 14], [14, 15], [15, 16], [42, 99]],
    });
    // The device returns the buffer (a request) and the guest refills it.
    expect(await guest.serveStatsOnce()).toBe(true);
    avail = 77 * MiB;
    expect(await guest.serveStatsOnce()).toBe(true);
    await new Promise((r) => setTimeout(r, 50));
    const st = await status(daemon);
    expect(st.stats?.values).toEqual({
      swap_in: 1, swap_out: 2, major_faults: 3, minor_faults: 4, free_memory: 5 * MiB, total_memory: 256 * MiB,
      available_memory: 77 * MiB, disk_caches: 8, hugetlb_allocations: 9, hugetlb_failures: 10, oom_kills: 11,
      alloc_stalls: 12, async_scans: 13, direct_scans: 14, async_reclaims: 15, direct_reclaims: 16,
    });
    expect(st.counters.unknownStatsTags).toBeGreaterThanOrEqual(2);
    expect(Date.now() - Date.parse(st.stats!.time)).toBeLessThan(5000);
  });

  it('a pause while the device holds the buffer: GET_VRING_BASE hands it back to the ring, and after resume (or at a migration\'s destination) it is taken again', async () => {
    daemon = await DaemonProcess.start(['--stats-interval', '0.3']);
    guest = await SimGuest.start({ socketPath: daemon.socketPath });
    expect(await guest.serveStatsOnce()).toBe(true); // refilled and added again: the device holds it now
    await new Promise((r) => setTimeout(r, 50));
    const bases = guest.pause();
    expect(bases[2], 'the stats ring\'s base leaves the held buffer out').toBe(1);
    guest.resume(bases);
    expect(await guest.serveStatsOnce(), 'the device took the buffer again and returned it').toBe(true);
  });

  it('with --stats-interval 0 the buffer is kept and never returned', async () => {
    daemon = await DaemonProcess.start(['--stats-interval', '0']);
    guest = await SimGuest.start({ socketPath: daemon.socketPath });
    expect(await guest.serveStatsOnce(500)).toBe(false);
    expect((await status(daemon)).stats?.values.total_memory).toBe(256 * MiB);
  });
});

describe('migration: the vhost dirty log', () => {
  it('every discarded page and every used ring the device writes is logged; pages it never touched are not', async () => {
    daemon = await DaemonProcess.start(['--stats-interval', '0', '--no-page-reporting']);
    guest = await SimGuest.start({ socketPath: daemon.socketPath, ramBytes: 64 * MiB });
    guest.mem.touch(0, guest.mem.usableEnd);
    const log = guest.startLogging();
    log.clear();
    const pfns = Array.from({ length: 512 }, (_, i) => 1000 + 2 * i); // every other page
    await guest.inflate(pfns.length, { pfns });
    const end = Date.now() + 5000;
    while (guest.mem.backedBytes(1000 * 4096, 1024 * 4096) > 512 * 4096 && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
    const st = await status(daemon);
    expect(st.counters.discardedBytes).toBe(512 * 4096);
    const unlogged = pfns.filter((p) => !log.dirty(p * 4096));
    expect(unlogged, 'discarded pages not in the log').toEqual([]);
    expect(log.dirty(1001 * 4096), 'a page between them, never written by the device').toBe(false);
    expect(log.dirty(guest.ring('inflate').used), 'the inflate queue\'s used ring').toBe(true);
  });
});

describe('message queue', () => {
  it('MSG_PRESSURE becomes guest pressure; unknown messages are counted', async () => {
    daemon = await DaemonProcess.start(['--stats-interval', '0']);
    guest = await SimGuest.start({ socketPath: daemon.socketPath });
    await guest.sendMessages([1, 7, 1, 0xdeadbeef], 2);
    await new Promise((r) => setTimeout(r, 50));
    const st = await status(daemon);
    expect(st.counters.guestPressure.message).toBe(2);
    expect(st.counters.badInput.unknown_message).toBe(2);
    expect(st.pressure.guest.lastSignal).toBe('message');
    expect(st.pressure.guest.inPressure).toBe(true);
  });

  it('uses the configured feature bit; "off" removes the queue', async () => {
    daemon = await DaemonProcess.start(['--message-vq-bit', '16']);
    guest = await SimGuest.start({ socketPath: daemon.socketPath, messageVqBit: 16 });
    expect(guest.roles.at(-1)).toBe('message');
    expect(guest.negotiated & (1n << 16n)).not.toBe(0n);
    expect(guest.negotiated & (1n << 23n)).toBe(0n);
    guest.close();
    guest = undefined;
    await daemon.stop();
    daemon = await DaemonProcess.start(['--message-vq-bit', 'off']);
    guest = await SimGuest.start({ socketPath: daemon.socketPath });
    expect(guest.roles).not.toContain('message');
  });
});

describe('free page reporting', () => {
  it('discards every reported range before acknowledging it', async () => {
    daemon = await DaemonProcess.start(['--stats-interval', '0']);
    guest = await SimGuest.start({ socketPath: daemon.socketPath, ramBytes: 256 * MiB });
    const ranges = [{ gpa: 16 * MiB, len: 4 * MiB }, { gpa: 64 * MiB, len: 2 * MiB }];
    for (const r of ranges) guest.mem.touch(r.gpa, r.len);
    guest.mem.touch(32 * MiB, MiB);
    await guest.reportFree(ranges);
    // No waiting: reporting is discarded before the ack.
    for (const r of ranges) expect(guest.mem.backedBytes(r.gpa, r.len)).toBe(0);
    expect(guest.mem.backedBytes(32 * MiB, MiB)).toBe(MiB);
    const st = await status(daemon);
    expect(st.counters.reportedPages).toBe((6 * MiB) / 4096);
    expect(st.actualBytes).toBe(0); // reporting is not ballooning
  });
});
