// The device over a real socket with a real memfd: pages the guest inflates
// are really freed; deflated pages are usable again; targets reach the guest.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DaemonProcess } from '../sim/daemon.js';
import { SimGuest } from '../sim/driver.js';
import { PAGE } from '../sim/guest-memory.js';

const MiB = 1 << 20;
let daemon: DaemonProcess;
let guest: SimGuest | undefined;

beforeEach(async () => {
  daemon = await DaemonProcess.start(['--stats-interval', '0.2']);
});
afterEach(async () => {
  guest?.close();
  guest = undefined;
  expect(await daemon.stop()).toBe(0);
});

describe('inflate and deflate', () => {
  it('negotiates the offered features and numbers the queues like Linux', async () => {
    guest = await SimGuest.start({ socketPath: daemon.socketPath });
    expect(guest.roles).toEqual(['inflate', 'deflate', 'stats', 'reporting', 'message']);
    await daemon.waitForLog((l) => l.msg === 'features negotiated');
    const log = daemon.find((l) => l.msg === 'features negotiated')[0]!;
    expect(log.features).toEqual(expect.arrayContaining(['MUST_TELL_HOST', 'STATS_VQ', 'DEFLATE_ON_OOM', 'PAGE_REPORTING', 'VERSION_1', 'MESSAGE_VQ']));
  });

  it('inflated pages are freed in the memfd, deflated pages are usable again', async () => {
    guest = await SimGuest.start({ socketPath: daemon.socketPath, ramBytes: 256 * MiB });
    const pages = (64 * MiB) / PAGE;
    const top = guest.mem.usableEnd;
    guest.mem.touch(top - 64 * MiB, 64 * MiB);
    expect(guest.mem.backedBytes(top - 64 * MiB, 64 * MiB)).toBe(64 * MiB);
    const pfns = await guest.inflate(pages);
    expect(pfns).toHaveLength(pages);
    // Deferred discard: freed within its flush delay.
    const deadline = Date.now() + 2000;
    while (guest.mem.backedBytes(top - 64 * MiB, 64 * MiB) > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    expect(guest.mem.backedBytes(top - 64 * MiB, 64 * MiB)).toBe(0);
    // Memory the guest did not name is untouched.
    guest.mem.touch(0, MiB);
    expect(guest.mem.backedBytes(0, MiB)).toBe(MiB);

    await guest.deflate(pages);
    guest.mem.touch(top - 64 * MiB, 64 * MiB);
    expect(guest.mem.backedBytes(top - 64 * MiB, 64 * MiB)).toBe(64 * MiB);
    expect(guest.mem.bytes[top - PAGE]).toBe(0xa5);
  });
});
