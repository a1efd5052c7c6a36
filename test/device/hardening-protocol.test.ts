// A hostile or broken frontend at the protocol level: an oversized
// GET_CONFIG, avail indices that jump, kick fds closed under the epoll set,
// a backend channel that stops draining, and QMP targets above the ceiling.
import { readdirSync, readFileSync, readlinkSync, statSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { ControlClient } from '../../src/control/client.js';
import type { DaemonStatus } from '../../src/control/status.js';
import { DaemonProcess } from '../sim/daemon.js';
import { sleep } from '../sim/wait.js';
import { SimGuest } from '../sim/driver.js';
import { VHOST_USER, VHOST_USER_SLAVE_CONFIG_CHANGE_MSG } from '../sim/frontend.js';
import { PAGE } from '../sim/guest-memory.js';
import { CONFIG_OFFSET_NUM_PAGES, CONFIG_SIZE } from '../sim/linux.js';
import { VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT } from '../sim/split-ring.js';

const MiB = 1 << 20;
let daemon: DaemonProcess | undefined;
let guest: SimGuest | undefined;

afterEach(async () => {
  guest?.close();
  guest = undefined;
  if (daemon) expect(await daemon.stop(), 'daemon exits cleanly').toBe(0);
  daemon = undefined;
});


const status = (d: DaemonProcess): Promise<DaemonStatus> => d.status();

/** The daemon's user + system CPU time in ms (clock ticks of 10 ms). */
function cpuMs(d: DaemonProcess): number {
  const f = readFileSync(`/proc/${d.child.pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(f[11]) + Number(f[12])) * 10;
}

/**
 * Registrations in the daemon's epoll sets whose fd is closed or names
 * another file now (fdinfo lists each target's fd and inode).
 */
function staleEpollEntries(d: DaemonProcess): string[] {
  const pid = d.child.pid!;
  const stale: string[] = [];
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    let link: string;
    try {
      link = readlinkSync(`/proc/${pid}/fd/${fd}`);
    } catch {
      continue;
    }
    if (link !== 'anon_inode:[eventpoll]') continue;
    for (const m of readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8').matchAll(/tfd:\s+(\d+).*?ino:([0-9a-f]+)/g)) {
      let ino: bigint | null = null;
      try {
        ino = BigInt(statSync(`/proc/${pid}/fd/${m[1]}`, { bigint: true }).ino);
      } catch {
        // closed
      }
      if (ino !== BigInt(`0x${m[2]}`)) stale.push(`epoll ${fd}: tfd ${m[1]} (ino 0x${m[2]}) ${ino === null ? 'closed' : 'reused'}`);
    }
  }
  return stale;
}

describe('GET_CONFIG with a size beyond the config region', () => {
  it('is refused with an empty reply; the daemon lives and answers the next GET_CONFIG correctly', async () => {
    daemon = await DaemonProcess.start(['--stats-interval', '0']);
    guest = await SimGuest.start({ socketPath: daemon.socketPath, ramBytes: 64 * MiB });
    const ctl = await ControlClient.connect(daemon.controlPath);
    await ctl.request({ op: 'set-target', value: '8M' });
    ctl.close();
    // 268 bytes: {offset 0, size 0xffff, flags 0, region[256]}, as the hostile frontend sent.
    const p = Buffer.alloc(12 + 256);
    p.writeUInt32LE(0xffff, 4);
    const reply = guest.fe.call(VHOST_USER.GET_CONFIG, p);
    expect(reply.payload.length, 'refused: libvhost-user answers an empty payload').toBe(0);
    expect(guest.readConfig().num_pages).toBe((8 * MiB) / PAGE);
    const st = await status(daemon);
    expect(st.connected).toBe(true);
    expect(daemon.exitCode).toBeNull();
  });

  it('a size between the config and the region is answered zero-padded', async () => {
    daemon = await DaemonProcess.start(['--stats-interval', '0']);
    guest = await SimGuest.start({ socketPath: daemon.socketPath, ramBytes: 64 * MiB });
    const p = Buffer.alloc(12 + 256);
    p.writeUInt32LE(256, 4);
    const reply = guest.fe.call(VHOST_USER.GET_CONFIG, p);
    expect(reply.payload.length).toBe(12 + 256);
    expect(reply.payload.subarray(12 + CONFIG_SIZE).every((b) => b === 0)).toBe(true);
  });
});

describe('memory regions that touch (two NUMA backends)', () => {
  /** An indirect table of `n` 4-byte PFN segments, `before` of them below the regions' boundary. */
  function postStraddling(g: SimGuest, boundary: number, n: number, before: number, firstPfn: number): number {
    const table = boundary - 16 * before;
    const bufs = g.scratch(Buffer.from(Uint32Array.from({ length: n }, (_, i) => firstPfn + i).buffer));
    for (let i = 0; i < n; i++) {
      const at = table + 16 * i; // the 'numa' layout keeps memfd offset = gpa
      g.mem.bytes.writeBigUInt64LE(BigInt(bufs + 4 * i), at);
      g.mem.bytes.writeUInt32LE(4, at + 8);
      g.mem.bytes.writeUInt16LE(i < n - 1 ? VIRTQ_DESC_F_NEXT : 0, at + 12);
      g.mem.bytes.writeUInt16LE(i + 1, at + 14);
    }
    const ring = g.ring('inflate');
    const head = ring.addRaw([{ gpa: table, len: 16 * n, flags: VIRTQ_DESC_F_INDIRECT }]);
    ring.notify();
    return head;
  }

  it('an indirect table across the boundary is read as one table (libvhost-user 7.2 copied it past its stack buffer)', async () => {
    daemon = await DaemonProcess.start(['--stats-interval', '0']);
    guest = await SimGuest.start({ socketPath: daemon.socketPath, ramBytes: 64 * MiB, layout: 'numa' });
    const half = 32 * MiB;
    const ring = guest.ring('inflate');
    // 64 descriptors (1 KiB) on each side: unpatched, the second half went 16 KiB on, past the buffer.
    await ring.waitFor(postStraddling(guest, half, 128, 64, 1000));
    expect((await status(daemon)).counters.badInput.oversized_buffer, 'more segments than the device reads: returned').toBe(1);
    // 20 on each side, within what the device reads: all 40 PFNs balloon.
    await ring.waitFor(postStraddling(guest, half, 40, 20, 2000));
    const st = await status(daemon);
    expect(st.balloonBytes).toBe(40 * PAGE);
    expect(st.counters.badInput.device_error).toBeUndefined();
    await guest.inflate(256); // and the device goes on
    expect(daemon.exitCode).toBeNull();
  });
});

describe('avail->idx bounded by the ring size', () => {
  it('a jump past the queue size breaks the device before any stale entry is used', async () => {
    daemon = await DaemonProcess.start(['--stats-interval', '0']);
    guest = await SimGuest.start({ socketPath: daemon.socketPath, ramBytes: 64 * MiB });
    const ring = guest.ring('inflate');
    // Two rounds of the ring: every avail slot names a valid, used buffer.
    await guest.inflate(2 * ring.num * 256 > 12000 ? 12000 : 2 * ring.num * 256);
    const before = await status(daemon);
    const used = ring.deviceUsedIdx;
    ring.setAvailIdxRaw(ring.publishedAvailIdx + ring.num + 5);
    ring.notify();
    const err = await daemon.waitForLog((l) => l.kind === 'device_error');
    expect(String(err.message)).toMatch(/Guest moved avail index/);
    expect(ring.deviceUsedIdx, 'no stale element was used').toBe(used);
    await daemon.waitForLog((l) => l.msg === 'frontend disconnected');
    guest.close();
    guest = await SimGuest.start({ socketPath: daemon.socketPath, ramBytes: 64 * MiB });
    const after = await status(daemon);
    expect(after.counters.inflatedPages).toBe(before.counters.inflatedPages);
  });

  it('a step back by one (65,535 "new" entries) is refused at once, costing no CPU', async () => {
    daemon = await DaemonProcess.start(['--stats-interval', '0']);
    guest = await SimGuest.start({ socketPath: daemon.socketPath, ramBytes: 64 * MiB });
    await guest.sendMessages(Array.from({ length: 20 }, () => 9), 2);
    const before = await status(daemon);
    const cpu0 = cpuMs(daemon);
    const ring = guest.ring('message');
    ring.setAvailIdxRaw(ring.publishedAvailIdx - 1);
    ring.notify();
    await daemon.waitForLog((l) => l.kind === 'device_error');
    await daemon.waitForLog((l) => l.msg === 'frontend disconnected');
    const cpu = cpuMs(daemon) - cpu0;
    expect(cpu, `daemon CPU for the bad index: ${cpu} ms`).toBeLessThan(100);
    guest.close();
    guest = await SimGuest.start({ socketPath: daemon.socketPath, ramBytes: 64 * MiB });
    expect((await status(daemon)).counters.badInput.unknown_message).toBe(before.counters.badInput.unknown_message);
  });
});

describe('kick fds that libvhost-user closes', () => {
  it('leave the epoll set before they are closed: no stale registration, no wake-ups from the old eventfd', async () => {
    daemon = await DaemonProcess.start(['--stats-interval', '0']);
    guest = await SimGuest.start({ socketPath: daemon.socketPath, ramBytes: 64 * MiB });
    await guest.inflate(256);
    expect(staleEpollEntries(daemon)).toEqual([]);
    guest.stop(); // GET_VRING_BASE on every queue: libvhost-user closes the kick fds we still hold
    await sleep(100);
    expect(staleEpollEntries(daemon)).toEqual([]);
    const cpu0 = cpuMs(daemon);
    for (const r of guest.rings.values()) r.notify(); // kicks on the old eventfds
    await sleep(500);
    const cpu = cpuMs(daemon) - cpu0;
    expect(cpu, `daemon CPU after kicks on removed fds: ${cpu} ms`).toBeLessThan(100);
    expect(daemon.find((l) => /closed before it was unwatched|nobody watches/.test(String(l.err?.message ?? l.msg)))).toEqual([]);
    await guest.reboot();
    await guest.inflate(256);
    expect(staleEpollEntries(daemon)).toEqual([]);
  });
});

describe('CONFIG_CHANGE_MSG on a backend channel that stops draining', () => {
  it('is queued, never lost or torn: the frontend gets one more whole message once it reads again', async () => {
    daemon = await DaemonProcess.start(['--stats-interval', '0', '--log-level', 'info']);
    guest = await SimGuest.start({ socketPath: daemon.socketPath, ramBytes: 256 * MiB });
    const ctl = await ControlClient.connect(daemon.controlPath);
    let st = await status(daemon);
    let changes = 0;
    // The frontend reads nothing: fill the channel until a send has to wait.
    while (!st.configChange.pending && changes < 20_000) {
      for (let i = 0; i < 100; i++) await ctl.request({ op: 'set-target', value: `${1 + ((changes++) % 2)}M` });
      st = await status(daemon);
    }
    expect(st.configChange.pending, `channel full after ${changes} changes`).toBe(true);
    const sentWhole = st.configChange.sent;
    await ctl.request({ op: 'set-target', value: '40M' }); // folds into the queued message
    ctl.close();
    st = await status(daemon);
    expect(st.configChange).toMatchObject({ sent: sentWhole, pending: true });
    // Read back: every message is a whole CONFIG_CHANGE header, and one more
    // than were sent before the channel filled comes once there is room.
    let got = 0;
    for (;;) {
      const m = await guest.backend.next(got < sentWhole ? 2000 : 1000);
      if (!m) break;
      expect(m.request).toBe(VHOST_USER_SLAVE_CONFIG_CHANGE_MSG);
      expect(m.payload.length).toBe(0);
      got++;
    }
    expect(got).toBe(sentWhole + 1);
    st = await status(daemon);
    expect(st.configChange).toMatchObject({ sent: sentWhole + 1, pending: false });
    expect(st.configChange.waits).toBeGreaterThanOrEqual(1);
    expect(guest.readConfig().num_pages).toBe((40 * MiB) / PAGE);
  });
});

describe('QMP balloon above the ceiling (num_pages written by the frontend)', () => {
  it('is lowered to the ceiling with cause "ceiling", held by qemu-monitor, and the device carries on', async () => {
    daemon = await DaemonProcess.start(['--stats-interval', '0', '--max-balloon', '32M']);
    guest = await SimGuest.start({ socketPath: daemon.socketPath, ramBytes: 64 * MiB });
    const b = Buffer.alloc(4);
    b.writeUInt32LE((48 * MiB) / PAGE); // above the 32 MiB ceiling
    guest.setConfig(CONFIG_OFFSET_NUM_PAGES, b);
    await sleep(100);
    const st = await status(daemon);
    expect(st.targetBytes).toBe(32 * MiB);
    expect(st.mode).toBe('manual');
    expect(st.hold?.owner).toBe('qemu-monitor');
    expect(st.decisions.at(-1)).toMatchObject({ rule: 'manual-target', newTargetBytes: 32 * MiB });
    expect((st.decisions.at(-1) as { cause?: string }).cause).toBe('ceiling');
    expect(daemon.find((l) => l.msg === 'event handler failed')).toEqual([]);
    await guest.followTarget();
    expect((await status(daemon)).balloonBytes).toBe(32 * MiB);
  });
});
