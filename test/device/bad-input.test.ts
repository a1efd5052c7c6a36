// A hostile or buggy guest: the daemon counts and logs each kind, returns
// the buffer where the virtqueue allows it, never discards memory the guest
// did not name, never crashes, and serves the next frontend cleanly.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ControlClient } from '../../src/control/client.js';
import type { DaemonStatus } from '../../src/control/status.js';
import { DaemonProcess } from '../sim/daemon.js';
import { SimGuest } from '../sim/driver.js';
import { Frontend } from '../sim/frontend.js';
import { PAGE } from '../sim/guest-memory.js';

const MiB = 1 << 20;
const RAM = 64 * MiB;
let daemon: DaemonProcess;
let guest: SimGuest | undefined;

beforeEach(async () => {
  daemon = await DaemonProcess.start(['--stats-interval', '0']);
});
afterEach(async () => {
  guest?.close();
  guest = undefined;
  expect(await daemon.stop(), 'daemon exits cleanly after bad input').toBe(0);
});

async function status(): Promise<DaemonStatus> {
  const c = await ControlClient.connect(daemon.controlPath);
  try {
    return await c.request<DaemonStatus>({ op: 'status' });
  } finally {
    c.close();
  }
}
const le32 = (...v: number[]) => Buffer.from(Uint32Array.from(v).buffer);
const waitFlush = () => new Promise((r) => setTimeout(r, 100));

/** Make all balloonable RAM resident so any stray discard would show. */
function fill(g: SimGuest): void {
  g.mem.touch(0, g.mem.usableEnd);
}

describe('bad inflate buffers', () => {
  it('PFNs outside guest RAM are skipped; the valid ones still balloon', async () => {
    guest = await SimGuest.start({ socketPath: daemon.socketPath, ramBytes: RAM });
    fill(guest);
    const inRam = 100;
    await guest.tellHost('inflate', [inRam, RAM / PAGE, RAM / PAGE + 7, 0xffffffff]);
    await waitFlush();
    expect(guest.mem.backedBytes(inRam * PAGE, PAGE)).toBe(0);
    expect(guest.mem.backedBytes(0, inRam * PAGE)).toBe(inRam * PAGE);
    expect(guest.mem.backedBytes((inRam + 1) * PAGE, guest.mem.usableEnd - (inRam + 1) * PAGE)).toBe(guest.mem.usableEnd - (inRam + 1) * PAGE);
    const st = await status();
    expect(st.counters.badInput.pfn_outside_ram).toBe(3);
    expect(st.balloonBytes).toBe(PAGE);
  });

  it('a PFN buffer of odd length: whole entries used, tail ignored', async () => {
    guest = await SimGuest.start({ socketPath: daemon.socketPath, ramBytes: RAM });
    fill(guest);
    const at = guest.scratch(Buffer.concat([le32(200, 201), Buffer.from([0x05, 0x01])]));
    await guest.ring('inflate').waitFor(guest.postRaw('inflate', [{ gpa: at, len: 10 }]));
    await waitFlush();
    expect(guest.mem.backedBytes(200 * PAGE, 2 * PAGE)).toBe(0);
    expect(guest.mem.backedBytes(202 * PAGE, PAGE)).toBe(PAGE);
    expect((await status()).counters.badInput.pfn_buffer_odd_length).toBe(1);
  });

  it('a device-writable PFN descriptor is ignored and returned', async () => {
    guest = await SimGuest.start({ socketPath: daemon.socketPath, ramBytes: RAM });
    fill(guest);
    const at = guest.scratch(le32(300, 301, 302));
    await guest.ring('inflate').waitFor(guest.postRaw('inflate', [{ gpa: at, len: 12, write: true }]));
    await waitFlush();
    expect(guest.mem.backedBytes(0, guest.mem.usableEnd)).toBe(guest.mem.usableEnd);
    const st = await status();
    expect(st.counters.badInput.wrong_direction).toBe(1);
    expect(st.counters.badInput.empty_buffer).toBe(1);
  });

  it('an oversized chain (more segments than we read, > 1 MiB of PFNs) is returned untouched', async () => {
    guest = await SimGuest.start({ socketPath: daemon.socketPath, ramBytes: RAM });
    fill(guest);
    const at = guest.scratch(le32(...Array.from({ length: 100 }, (_, i) => 400 + i)));
    const segs = Array.from({ length: 100 }, (_, i) => ({ gpa: at + 4 * i, len: 4 }));
    await guest.ring('inflate').waitFor(guest.postRaw('inflate', segs));
    await guest.ring('inflate').waitFor(guest.postRaw('inflate', [{ gpa: 0, len: 2 * MiB }]));
    await waitFlush();
    expect(guest.mem.backedBytes(0, guest.mem.usableEnd)).toBe(guest.mem.usableEnd);
    expect((await status()).counters.badInput.oversized_buffer).toBe(2);
  });

  it('a zero-length descriptor breaks the device (as in QEMU); the daemon drops that frontend and serves the next', async () => {
    guest = await SimGuest.start({ socketPath: daemon.socketPath, ramBytes: RAM });
    fill(guest);
    guest.postRaw('inflate', [{ gpa: guest.scratch(le32(5)), len: 0 }]);
    await daemon.waitForLog((l) => l.kind === 'device_error');
    await daemon.waitForLog((l) => l.msg === 'frontend disconnected');
    expect(guest.mem.backedBytes(0, guest.mem.usableEnd)).toBe(guest.mem.usableEnd);
    guest.close();
    guest = await SimGuest.start({ socketPath: daemon.socketPath, ramBytes: RAM });
    await guest.inflate(16);
    expect((await status()).counters.badInput.device_error).toBe(1);
  });
});

describe('other queues', () => {
  it('a truncated stats entry: whole entries kept, counted', async () => {
    guest = await SimGuest.start({ socketPath: daemon.socketPath, ramBytes: RAM, stats: () => [[5, RAM], [6, 5 * MiB]] });
    await new Promise((r) => setTimeout(r, 50));
    // A second, truncated buffer: the device keeps it as the newest sample
    // and hands the primed one (head 0) back.
    const b = Buffer.alloc(15);
    b.writeUInt16LE(4, 0);
    b.writeBigUInt64LE(123n, 2);
    guest.postRaw('stats', [{ gpa: guest.scratch(b), len: 15 }]);
    await guest.ring('stats').waitFor(0);
    const st = await status();
    expect(st.counters.badInput.truncated_stats).toBe(1);
    expect(st.stats?.values).toEqual({ free_memory: 123 });
  });

  it('a reporting range outside RAM discards nothing; the device breaks and the next frontend works', async () => {
    guest = await SimGuest.start({ socketPath: daemon.socketPath, ramBytes: RAM });
    fill(guest);
    guest.postRaw('reporting', [{ gpa: RAM - 4 * MiB, len: 2 * MiB, write: true }, { gpa: RAM + 4 * MiB, len: 2 * MiB, write: true }]);
    await daemon.waitForLog((l) => l.msg === 'frontend disconnected');
    expect(guest.mem.backedBytes(0, guest.mem.usableEnd)).toBe(guest.mem.usableEnd);
    guest.close();
    guest = await SimGuest.start({ socketPath: daemon.socketPath, ramBytes: RAM });
    await guest.reportFree([{ gpa: 4 * MiB, len: MiB }]);
    expect((await status()).counters.reportedPages).toBe(MiB / PAGE);
  });

  it('a flood of 100,000 messages neither starves inflation nor drives the target below zero', async () => {
    guest = await SimGuest.start({ socketPath: daemon.socketPath, ramBytes: RAM });
    const perBuffer = 1000;
    const msgs = le32(...Array.from({ length: perBuffer }, (_, i) => (i % 2 ? 1 : 9)));
    const at = guest.scratch(msgs);
    const ring = guest.ring('message');
    const heads: number[] = [];
    for (let sent = 0; sent < 100_000; sent += perBuffer) {
      if (ring.freeDescriptors === 0) {
        await ring.waitFor(heads.shift()!);
      }
      heads.push(ring.add([{ gpa: at, len: msgs.length }]));
      ring.kick();
      if (sent === 50_000) {
        // Mid-flood, inflation must still complete promptly.
        const t0 = Date.now();
        await guest.inflate(256);
        expect(Date.now() - t0).toBeLessThan(2000);
      }
    }
    for (const h of heads) await ring.waitFor(h);
    const st = await status();
    expect(st.counters.guestPressure.message).toBe(50_000);
    expect(st.counters.badInput.unknown_message).toBe(50_000);
    expect(st.targetBytes).toBe(0);
    expect(st.balloonBytes).toBe(256 * PAGE);
  });
});

describe('connections', () => {
  it('the frontend vanishing mid-batch leaves no fds or mappings behind', async () => {
    const fdsBefore = daemon.fds().length;
    guest = await SimGuest.start({ socketPath: daemon.socketPath, ramBytes: RAM });
    guest.postRaw('inflate', [{ gpa: guest.scratch(le32(...Array.from({ length: 256 }, (_, i) => 1000 + i))), len: 1024 }]);
    guest.close();
    guest = undefined;
    await daemon.waitForLog((l) => l.msg === 'frontend disconnected');
    await new Promise((r) => setTimeout(r, 100));
    expect(daemon.fds().length).toBe(fdsBefore);
    expect(daemon.guestMappings()).toBe(0);
    guest = await SimGuest.start({ socketPath: daemon.socketPath, ramBytes: RAM });
    await guest.inflate(8);
    expect((await status()).connected).toBe(true);
  });

  it('a second frontend is refused while the first keeps working', async () => {
    guest = await SimGuest.start({ socketPath: daemon.socketPath, ramBytes: RAM });
    const intruder = Frontend.connect(daemon.socketPath, 1000);
    expect(() => intruder.getU64(1)).toThrow();
    intruder.close();
    await guest.inflate(64);
    const st = await status();
    expect(st.counters.badInput.second_frontend).toBe(1);
    expect(st.balloonBytes).toBe(64 * PAGE);
  });
});
