// The simulated guest's less common paths against the real daemon: the
// SET_MEM_TABLE path, QEMU's q35 memory layout with holes, device stop and
// guest reboot, deflate racing a deferred discard, deflate-on-OOM, automatic
// stats refills, the follower, and the hostile-ring helpers.
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { ControlClient } from '../../src/control/client.js';
import type { DaemonStatus } from '../../src/control/status.js';
import { DaemonProcess } from './daemon.js';
import { sleep, until } from './wait.js';
import { SimGuest } from './driver.js';
import { QEMU_7_2_PROTOCOL_MASK, VHOST_USER, VHOST_USER_PROTOCOL_F } from './frontend.js';
import { PAGE } from './guest-memory.js';
import { bit } from './linux.js';
import * as raw from './raw.js';
import { SKIP, skipUnless } from '../skip.js';

const MiB = 1 << 20;
const GiB = 1024 * MiB;
let daemon: DaemonProcess | undefined;
let guest: SimGuest | undefined;

afterEach(async () => {
  guest?.close();
  guest = undefined;
  if (daemon) expect(await daemon.stop(), 'daemon exit code').toBe(0);
  daemon = undefined;
});

const status = (d: DaemonProcess): Promise<DaemonStatus> => d.status();
async function start(args: string[] = ['--stats-interval', '0']): Promise<DaemonProcess> {
  daemon = await DaemonProcess.start(args);
  return daemon;
}

describe('vhost-user paths', () => {
  it('SET_MEM_TABLE instead of ADD_MEM_REG when CONFIGURE_MEM_SLOTS is not used', async () => {
    const d = await start();
    guest = await SimGuest.start({
      socketPath: d.socketPath, ramBytes: 64 * MiB, protocolMask: QEMU_7_2_PROTOCOL_MASK & ~bit(VHOST_USER_PROTOCOL_F.CONFIGURE_MEM_SLOTS),
    });
    expect(guest.fe.sent).toContain(VHOST_USER.SET_MEM_TABLE);
    expect(guest.fe.sent).not.toContain(VHOST_USER.ADD_MEM_REG);
    const top = guest.mem.usableEnd;
    guest.mem.touch(0, top);
    await guest.inflate(256);
    expect(await until(() => guest!.mem.backedBytes(top - MiB, MiB) === 0)).toBe(true);
    expect(guest.mem.backedBytes(0, top - MiB)).toBe(top - MiB);
  });

  it('q35 layout: pages above 4 GiB balloon; PFNs in the VGA and PCI holes discard nothing', async () => {
    const d = await start();
    // 3 GiB guest: RAM below 2 GiB, the rest at 4 GiB (memfd offset 2 GiB).
    guest = await SimGuest.start({ socketPath: d.socketPath, ramBytes: 3 * GiB, layout: 'pc' });
    expect(guest.mem.regions.map((r) => r.gpa)).toEqual([0, 0xc0000, 4 * GiB]);
    guest.mem.bytes.fill(0xee, 0xa0000, 0xc0000); // the memfd bytes no region names
    guest.mem.touch(0, MiB);
    guest.mem.touch(4 * GiB, 8 * MiB);
    const holes = [0xa0, 0xbf, (2 * GiB) / PAGE, (3 * GiB) / PAGE, (4 * GiB) / PAGE - 1];
    await guest.tellHost('inflate', [...holes, (4 * GiB) / PAGE, (4 * GiB) / PAGE + 1, 0x10]);
    expect(await until(() => guest!.mem.backedBytes(4 * GiB, 2 * PAGE) === 0)).toBe(true);
    expect(guest.mem.backedBytes(0x10 * PAGE, PAGE)).toBe(0);
    await sleep(100);
    expect(guest.mem.unmappedBackedBytes(), 'VGA hole bytes of the memfd').toBe(0x20000);
    expect(guest.mem.bytes[0xa0000]).toBe(0xee);
    expect(guest.mem.backedBytes(4 * GiB + 2 * PAGE, 8 * MiB - 2 * PAGE)).toBe(8 * MiB - 2 * PAGE);
    expect((await status(d)).counters.badInput.pfn_outside_ram).toBe(holes.length);
    // The driver's own allocator walks the top region and never names a hole.
    const pfns = await guest.inflate(512);
    expect(pfns.every((p) => guest!.mem.isRam(p * PAGE, PAGE))).toBe(true);
  });

  it('device stop (GET_VRING_BASE) then a guest reboot: the daemon serves the new rings', async () => {
    const d = await start(['--stats-interval', '0.1']);
    guest = await SimGuest.start({ socketPath: d.socketPath, ramBytes: 64 * MiB });
    await guest.inflate(512);
    expect(await guest.serveStatsOnce()).toBe(true);
    const oldStats = guest.ring('stats');
    await guest.reboot();
    // After GET_VRING_BASE the device must not touch the old rings (their memory is the guest's again).
    const usedIdx = guest.mem.slice(oldStats.used, 4).readUInt16LE(2);
    await sleep(300);
    expect(guest.mem.slice(oldStats.used, 4).readUInt16LE(2), 'old stats ring used->idx').toBe(usedIdx);
    expect(await guest.serveStatsOnce()).toBe(true);
    guest.mem.touch(0, guest.mem.usableEnd);
    await guest.inflate(256);
    const top = guest.mem.usableEnd;
    expect(await until(() => guest!.mem.backedBytes(top - MiB, MiB) === 0)).toBe(true);
    // A second burst: the features were negotiated again, and the discard
    // thread's finished jobs must still reach the device.
    await sleep(100);
    await guest.inflate(256);
    expect(await until(() => guest!.mem.backedBytes(top - 2 * MiB, MiB) === 0), 'second burst freed').toBe(true);
    expect(guest.lostInterrupts).toBe(0);
  });

  // A daemon started under a real-time policy (chrt, systemd
  // CPUSchedulingPolicy=fifo): the discard thread, started from the event
  // loop once the guest negotiates, must reset itself to SCHED_OTHER so a
  // long discard never holds a core against the vCPUs.
  skipUnless(process.getuid?.() === 0, SKIP.notRoot).it('the discard thread runs SCHED_OTHER even when the event loop is SCHED_FIFO', async () => {
    const d = await start();
    const pid = d.child.pid as number;
    execFileSync('chrt', ['-f', '-p', '2', String(pid)]);
    // policy is field 41 of /proc/PID/task/TID/stat; after "(comm) " index 0 is field 3.
    const policies = () => new Map(readdirSync(`/proc/${pid}/task`).map((t) => {
      const text = readFileSync(`/proc/${pid}/task/${t}/stat`, 'utf8');
      return [Number(t), Number(text.slice(text.lastIndexOf(')') + 2).split(' ')[38])] as const;
    }));
    const before = policies();
    expect(before.get(pid), 'event loop thread after chrt').toBe(1);
    guest = await SimGuest.start({ socketPath: d.socketPath, ramBytes: 64 * MiB });
    const top = guest.mem.usableEnd;
    guest.mem.touch(0, top);
    await guest.inflate(256);
    expect(await until(() => guest!.mem.backedBytes(top - MiB, MiB) === 0), 'inflated pages freed by the thread').toBe(true);
    const after = policies();
    const fresh = [...after.keys()].filter((t) => !before.has(t));
    expect(fresh.length, 'a thread started for the guest').toBeGreaterThan(0);
    for (const t of fresh) expect(after.get(t), `thread ${t}`).toBe(0);
  });
});

describe('driver behaviour', () => {
  it('pages deflated right after inflation keep the data the guest writes (deferred discard)', async () => {
    const d = await start();
    guest = await SimGuest.start({ socketPath: d.socketPath, ramBytes: 64 * MiB });
    const top = guest.mem.usableEnd;
    await guest.inflate(4096);
    await guest.deflate(4096);
    guest.mem.touch(top - 16 * MiB, 16 * MiB, 0x77);
    await sleep(500);
    expect(guest.mem.backedBytes(top - 16 * MiB, 16 * MiB)).toBe(16 * MiB);
    for (let o = top - 16 * MiB; o < top; o += PAGE) if (guest.mem.bytes[o] !== 0x77) throw new Error(`page 0x${o.toString(16)} lost its data`);
  });

  it('deflates racing the discard thread: every deflated page keeps what the guest writes, the rest is freed', async () => {
    const d = await start();
    guest = await SimGuest.start({ socketPath: d.socketPath, ramBytes: 256 * MiB });
    const mem = guest.mem;
    mem.touch(0, mem.usableEnd);
    // Rounds of inflating 16 MiB and taking half of it straight back, so that
    // deflates land while the thread is discarding the same runs.
    const written = new Map<number, number>();
    for (let round = 1; round <= 12; round++) {
      await guest.inflate(4096, { updateSize: 'end' });
      for (const pfn of await guest.deflate(2048, { updateSize: 'end' })) {
        mem.bytes.fill(round, pfn * PAGE, (pfn + 1) * PAGE);
        written.set(pfn, round);
      }
    }
    const inBalloon = new Set(guest.balloon);
    expect(inBalloon.size).toBe(12 * 2048);
    expect(await until(() => mem.backedBytes(0, mem.usableEnd) === mem.usableEnd - inBalloon.size * PAGE)).toBe(true);
    const backedMap = mem.backedPageMap(0, mem.usableEnd);
    for (let pfn = 0; pfn < mem.usableEnd / PAGE; pfn++) {
      const backed = backedMap[pfn] === 1;
      if (inBalloon.has(pfn) === backed) throw new Error(`page ${pfn}: ${backed ? 'not freed in the balloon' : 'lost outside the balloon'}`);
      const want = inBalloon.has(pfn) ? undefined : written.get(pfn);
      if (want !== undefined && (mem.bytes[pfn * PAGE] !== want || mem.bytes[(pfn + 1) * PAGE - 1] !== want)) {
        throw new Error(`page ${pfn} lost the data written after its deflate`);
      }
    }
  });

  it('deflate-on-OOM takes 256 pages back and writes actual', async () => {
    const d = await start();
    guest = await SimGuest.start({ socketPath: d.socketPath, ramBytes: 64 * MiB });
    await guest.inflate(1024);
    expect(await guest.oomNotify()).toHaveLength(256);
    expect(guest.readConfig().actual).toBe(768);
    expect(await until(async () => (await status(d)).balloonBytes === 768 * PAGE)).toBe(true);
  });

  it("balloon compaction: the new page is discarded, the old one is the guest's again", async () => {
    const d = await start();
    guest = await SimGuest.start({ socketPath: d.socketPath, ramBytes: 64 * MiB });
    guest.mem.touch(0, guest.mem.usableEnd);
    await guest.inflate(256);
    const moved = await guest.migratePage();
    expect(moved).toBeDefined();
    guest.mem.touch(moved!.from * PAGE, PAGE, 0x33);
    await sleep(300);
    expect(guest.mem.backedBytes(moved!.to * PAGE, PAGE)).toBe(0);
    expect(guest.mem.bytes[moved!.from * PAGE]).toBe(0x33);
    expect(guest.readConfig().actual).toBe(256);
    expect((await status(d)).balloonBytes).toBe(256 * PAGE);
  });

  it('autoStats refills whenever the device asks, with Linux-ordered entries', async () => {
    const d = await start(['--stats-interval', '0.1']);
    guest = await SimGuest.start({ socketPath: d.socketPath, ramBytes: 64 * MiB, autoStats: true });
    expect(await guest.serveStatsOnce()).toBe(true);
    expect(await guest.serveStatsOnce()).toBe(true);
    const st = await status(d);
    expect(st.stats?.values.total_memory).toBe(64 * MiB);
    expect(st.stats?.values.minor_faults).toBeGreaterThan(1000);
  });

  it('the follower tracks targets array by array', async () => {
    const d = await start();
    guest = await SimGuest.start({ socketPath: d.socketPath, ramBytes: 128 * MiB });
    const f = guest.follow();
    const ctl = await ControlClient.connect(d.controlPath);
    try {
      await ctl.request({ op: 'set-target', value: '40M' });
      expect(await until(() => guest!.balloon.length === (40 * MiB) / PAGE)).toBe(true);
      await ctl.request({ op: 'set-target', value: '8M' });
      expect(await until(() => guest!.balloon.length === (8 * MiB) / PAGE)).toBe(true);
      expect(await until(async () => (await status(d)).actualBytes === 8 * MiB)).toBe(true);
    } finally {
      ctl.close();
      f.stop();
      await f.done;
    }
  });
});

describe('hostile rings', () => {
  const breakers: Array<[string, (g: SimGuest) => unknown]> = [
    ['a looped chain', (g) => raw.postLoop(g, 'inflate')],
    ['a head beyond the table', (g) => raw.postHeadOutOfRange(g, 'inflate')],
    ['avail->idx jumping past the queue size', (g) => raw.postAvailIdxJump(g, 'deflate')],
    ['an indirect table of odd size', (g) => raw.postBadIndirectTable(g, 'inflate')],
    ['a buffer outside guest RAM', (g) => raw.postBufferOutsideRam(g, 'inflate')],
    ['out after in', (g) => raw.postOutAfterIn(g, 'reporting')],
  ];
  for (const [name, post] of breakers) {
    it(`${name}: nothing discarded, the daemon lives and serves the next frontend`, async () => {
      const d = await start();
      guest = await SimGuest.start({ socketPath: d.socketPath, ramBytes: 64 * MiB });
      guest.mem.touch(0, guest.mem.usableEnd);
      post(guest);
      await d.waitForLog((l) => l.msg === 'frontend disconnected', 3000);
      expect(guest.mem.backedBytes(0, guest.mem.usableEnd)).toBe(guest.mem.usableEnd);
      guest.close();
      guest = await SimGuest.start({ socketPath: d.socketPath, ramBytes: 64 * MiB });
      await guest.inflate(16);
    });
  }

  it('a nested indirect table is bad input on the reporting queue, returned, nothing discarded', async () => {
    const d = await start();
    guest = await SimGuest.start({ socketPath: d.socketPath, ramBytes: 64 * MiB });
    guest.mem.touch(0, guest.mem.usableEnd);
    await guest.ring('reporting').waitFor(raw.postNestedIndirect(guest, 'reporting'));
    expect(guest.mem.backedBytes(0, guest.mem.usableEnd)).toBe(guest.mem.usableEnd);
    expect((await status(d)).counters.badInput.wrong_direction).toBe(1);
    await guest.reportFree([{ gpa: 8 * MiB, len: 2 * MiB }]);
    expect(guest.mem.backedBytes(8 * MiB, 2 * MiB)).toBe(0);
  });

  it('a chain longer than the queue (indirect) is returned without discarding', async () => {
    const d = await start();
    guest = await SimGuest.start({ socketPath: d.socketPath, ramBytes: 64 * MiB });
    guest.mem.touch(0, guest.mem.usableEnd);
    const head = raw.postChainLongerThanQueue(guest, 'inflate');
    await guest.ring('inflate').waitFor(head);
    await sleep(100);
    expect(guest.mem.backedBytes(0, guest.mem.usableEnd)).toBe(guest.mem.usableEnd);
    await guest.inflate(16);
  });
});
