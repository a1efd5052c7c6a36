// Isolation between VMs in one host daemon: a noisy or hostile guest or
// frontend on one device must not crash or stall the others. The noisy
// neighbour runs in a process of its own (test/sim/noisy.ts) so that its
// work never shares a thread with the measurement (test/sim/neighbour.ts).
// These tests assert that the quiet VM is served *while* the neighbour does
// its worst and that no acknowledgement waits anywhere near a stall; they
// print the latency figures. The p99 target (< 5 ms) is a speed target and
// is measured, with repeats and spreads, by `npm run bench:isolation`.
import { ChildProcess } from 'node:child_process';
import { afterEach, describe, expect, it } from 'vitest';
import type { DaemonStatus } from '../../src/control/status.js';
import { DaemonProcess } from '../sim/daemon.js';
import { SimGuest } from '../sim/driver.js';
import { PAGE } from '../sim/guest-memory.js';
import { ackFigures, ackLatencies, compareWithNeighbour, FLOODS, Noisy, showAcks, type Comparison } from '../sim/neighbour.js';

const MiB = 1 << 20;
/**
 * No acknowledgement of the quiet VM may wait this long. Measured waits are
 * 1-12 ms at most, 20 ms on a loaded machine; a queue held behind the
 * neighbour's work would wait for a ring's worth of it or for ever.
 */
const STALL_MS = 250;
/** The quiet VM's acknowledgements that must complete while the neighbour's scenario runs (200-3,000 do). */
const MIN_ACKED_WHILE_NOISY = 50;

let daemon: DaemonProcess | undefined;
const guests: SimGuest[] = [];
const children: ChildProcess[] = [];

afterEach(async () => {
  for (const c of children.splice(0)) if (c.exitCode === null) c.kill('SIGKILL');
  for (const g of guests.splice(0)) g.close();
  if (daemon) expect(await daemon.stop(), 'daemon exits cleanly').toBe(0);
  daemon = undefined;
});

async function guest(socketPath: string, ramBytes = 256 * MiB): Promise<SimGuest> {
  const g = await SimGuest.start({ socketPath, ramBytes });
  guests.push(g);
  g.mem.touch(0, g.mem.usableEnd);
  return g;
}

const neighbour = (socket: string, scenario: string, ramMiB?: number) => Noisy.start(socket, scenario, ramMiB, (c) => children.push(c));

async function compare(label: string, quiet: SimGuest, noisy: Noisy): Promise<Comparison> {
  const r = await compareWithNeighbour(quiet, noisy);
  console.log(`[isolation] ${label}: other VM alone      ${showAcks(r.alone)}`);
  console.log(`[isolation] ${label}: with the neighbour   ${showAcks(r.during)}, ${r.ackedWhileNoisy} while it ran`
    + `${r.neighbourMs === null ? '' : ` (neighbour done in ${r.neighbourMs.toFixed(0)} ms)`}`);
  return r;
}

function servedThroughout(r: Comparison): void {
  expect(r.ackedWhileNoisy, 'the quiet VM\'s buffers acknowledged while the neighbour ran').toBeGreaterThanOrEqual(MIN_ACKED_WHILE_NOISY);
  expect(r.during.max, `longest wait with the neighbour (alone: ${r.alone.max.toFixed(2)} ms)`).toBeLessThan(STALL_MS);
}

async function status(vm: string): Promise<DaemonStatus> {
  return daemon!.request<DaemonStatus>({ op: 'status', vm });
}

describe('a noisy neighbour does not stall the other VM', () => {
  it.each(FLOODS)('%s: the other VM\'s inflate buffers are acknowledged all along, none waits 250 ms', { timeout: 180_000 }, async (label, scenario) => {
    daemon = await DaemonProcess.startHost(['--log-level', 'info']);
    const sa = await daemon.addVm('noisy', { 'stats-interval': 0 });
    const sb = await daemon.addVm('quiet', { 'stats-interval': 0 });
    const noisy = await neighbour(sa, scenario);
    const quiet = await guest(sb, 512 * MiB);
    const r = await compare(label, quiet, noisy);
    await noisy.state('done');
    servedThroughout(r);
    const st = await status('quiet');
    expect(st.connected).toBe(true);
    expect(st.balloonBytes).toBe(quiet.pages.size * PAGE);
  });
});

describe('a frontend that stalls does not stall the daemon', () => {
  it('half a message, then nothing: the other VM balloons on; the rest of the message is handled when it comes', async () => {
    daemon = await DaemonProcess.startHost(['--log-level', 'info']);
    const sa = await daemon.addVm('stalled', { 'stats-interval': 0 });
    const sb = await daemon.addVm('quiet', { 'stats-interval': 0 });
    const a = await guest(sa, 64 * MiB);
    const b = await guest(sb);
    // GET_FEATURES header and half of a SET_CONFIG: both halves sent raw.
    const msg = Buffer.alloc(12 + 16);
    msg.writeUInt32LE(24, 0); // GET_CONFIG
    msg.writeUInt32LE(1, 4);
    msg.writeUInt32LE(16, 8);
    msg.writeUInt32LE(0, 12);
    msg.writeUInt32LE(4, 16);
    const { native } = await import('../../src/transport/native.js');
    expect(Number(native().vub_send_fds(a.fe.sock, msg, 7, null, 0))).toBe(7);
    const t = Date.now();
    const lat = ackFigures((await ackLatencies(b, () => Date.now() - t > 1500, 500)).latencies);
    console.log(`[isolation] half a message from the other frontend: ${showAcks(lat)}`);
    expect(lat.max).toBeLessThan(STALL_MS);
    expect(Number(native().vub_send_fds(a.fe.sock, msg.subarray(7), msg.length - 7, null, 0))).toBe(msg.length - 7);
    const reply = a.fe.recv();
    expect([reply.request, reply.payload.length]).toEqual([24, 16]);
    await a.inflate(256);
    expect((await status('stalled')).balloonBytes).toBe(256 * PAGE);
    expect((await status('quiet')).connected).toBe(true);
  });

  it('half a message, then the frontend closes: that connection is dropped, the other VM carries on', async () => {
    daemon = await DaemonProcess.startHost(['--log-level', 'info']);
    const sa = await daemon.addVm('stalled', { 'stats-interval': 0 });
    const sb = await daemon.addVm('quiet', { 'stats-interval': 0 });
    const a = await guest(sa, 64 * MiB);
    const b = await guest(sb);
    await b.inflate(512);
    const { native } = await import('../../src/transport/native.js');
    expect(Number(native().vub_send_fds(a.fe.sock, Buffer.from([1, 0, 0, 0, 1]), 5, null, 0))).toBe(5);
    a.dropConnection();
    await daemon.waitForLog((l) => l.msg === 'frontend disconnected' && l.vm === 'stalled');
    await b.inflate(512);
    const st = await status('quiet');
    expect([st.connected, st.balloonBytes]).toEqual([true, 1024 * PAGE]);
  });

  it('a frontend that never reads its replies: the daemon stops reading it, the other VM balloons on', async () => {
    daemon = await DaemonProcess.startHost(['--log-level', 'info']);
    const sa = await daemon.addVm('deaf', { 'stats-interval': 0 });
    const sb = await daemon.addVm('quiet', { 'stats-interval': 0 });
    const noisy = await neighbour(sa, 'no-reply-reader', 64);
    const quiet = await guest(sb);
    const r = await compare('a frontend that never reads its replies', quiet, noisy);
    // Still stalled after the measurement: its replies fill its socket, the daemon waits for EPOLLOUT.
    const t = Date.now();
    const after = ackFigures((await ackLatencies(quiet, () => Date.now() - t > 1000, 300)).latencies);
    console.log(`[isolation] a frontend that never reads its replies, later: ${showAcks(after)}`);
    expect(noisy.has('stalled'), 'the neighbour blocked on its full socket').toBe(true);
    expect(r.during.max).toBeLessThan(STALL_MS);
    expect(after.n).toBeGreaterThanOrEqual(300);
    expect(after.max).toBeLessThan(STALL_MS);
    expect((await status('deaf')).connected).toBe(true);
    noisy.kill();
    await daemon.waitForLog((l) => l.msg === 'frontend disconnected' && l.vm === 'deaf');
    expect((await status('quiet')).connected).toBe(true);
  });
});

describe('a broken device is dropped alone', () => {
  async function twoVms() {
    daemon = await DaemonProcess.startHost(['--log-level', 'info']);
    const sa = await daemon.addVm('broken', { 'stats-interval': 0 });
    const sb = await daemon.addVm('quiet', { 'stats-interval': 0 });
    const b = await guest(sb);
    await b.inflate(1024);
    await b.deflate(256);
    return { sa, b, before: await status('quiet') };
  }

  async function quietUnchanged(b: SimGuest, before: DaemonStatus): Promise<void> {
    const mid = await status('quiet');
    expect(mid.connected).toBe(true);
    expect([mid.balloonBytes, mid.targetBytes, mid.counters.inflatedPages, mid.counters.deflatedPages])
      .toEqual([before.balloonBytes, before.targetBytes, before.counters.inflatedPages, before.counters.deflatedPages]);
    expect(mid.counters.badInput).toEqual(before.counters.badInput);
    // ... and it keeps ballooning.
    await b.inflate(512);
    await b.deflate(256);
    const after = await status('quiet');
    expect([after.connected, after.balloonBytes]).toEqual([true, before.balloonBytes + 256 * PAGE]);
  }

  it('by libvhost-user (a head beyond the descriptor table): that VM\'s connection goes, the other\'s status is unchanged and it balloons on', async () => {
    const { sa, b, before } = await twoVms();
    const a = await guest(sa, 64 * MiB);
    await a.inflate(256);
    const { postHeadOutOfRange } = await import('../sim/raw.js');
    postHeadOutOfRange(a, 'inflate');
    const err = await daemon!.waitForLog((l) => l.kind === 'device_error' && l.vm === 'broken');
    expect(String(err.message)).toMatch(/index .* is available|Guest says/);
    await daemon!.waitForLog((l) => l.msg === 'frontend disconnected' && l.vm === 'broken');
    await quietUnchanged(b, before);
    expect((await status('broken')).connected).toBe(false);
    // The broken VM's socket takes its next frontend.
    const again = await guest(sa, 64 * MiB);
    await again.inflate(256);
    expect((await status('broken')).connected).toBe(true);
  });

  it('by our firewall (a malformed vhost-user message): that VM\'s connection goes, the other\'s status is unchanged and it balloons on', async () => {
    const { sa, b, before } = await twoVms();
    const a = await guest(sa, 64 * MiB);
    const { VHOST_USER } = await import('../sim/frontend.js');
    const bad = Buffer.alloc(8);
    bad.writeUInt32LE(7, 0); // queue index 7 of 6
    bad.writeUInt32LE(128, 4);
    a.fe.send(VHOST_USER.SET_VRING_NUM, bad);
    const err = await daemon!.waitForLog((l) => l.kind === 'device_error' && l.vm === 'broken');
    expect(String(err.message)).toMatch(/invalid vhost-user message SET_VRING_NUM: queue index 7/);
    await daemon!.waitForLog((l) => l.msg === 'frontend disconnected' && l.vm === 'broken');
    await quietUnchanged(b, before);
  });

  it('a kick eventfd that is blocking and shared by two queues (each kick read twice) breaks nothing: it is made non-blocking, the other VM balloons on', async () => {
    const { sa, b, before } = await twoVms();
    const a = await guest(sa, 64 * MiB);
    const { eventfd, eventfdWrite, EFD_CLOEXEC } = await import('../../src/transport/libc.js');
    const { VHOST_USER } = await import('../sim/frontend.js');
    const { fcntlFlags } = await import('../sim/sys.js');
    const shared = Number(eventfd(0, EFD_CLOEXEC)); // blocking
    for (const q of [0, 1]) {
      const p = Buffer.alloc(8);
      p.writeBigUInt64LE(BigInt(q));
      a.fe.send(VHOST_USER.SET_VRING_KICK, p, [shared]);
    }
    a.fe.getU64(VHOST_USER.GET_FEATURES); // both handled
    expect(fcntlFlags(shared) & 0o4000, 'O_NONBLOCK set on the shared file').toBe(0o4000);
    // One write wakes both queues' watches; libvhost-user's own read would block on the second.
    for (let i = 0; i < 50; i++) {
      eventfdWrite(shared);
      await new Promise((r) => setTimeout(r, 2));
    }
    await quietUnchanged(b, before);
    expect((await status('broken')).connected).toBe(true);
    const { close } = await import('../sim/sys.js');
    close(shared);
  });
});

describe('one device\'s discard thread and memory table never touch another\'s mappings', () => {
  it('VM A removes and re-adds a region and replaces its whole table while its thread discards; B inflates: B keeps its data, A\'s discards hit only A\'s memfd', async () => {
    daemon = await DaemonProcess.startHost(['--log-level', 'info']);
    const sa = await daemon.addVm('a', { 'stats-interval': 0 });
    const sb = await daemon.addVm('b', { 'stats-interval': 0 });
    // A: two regions (NUMA layout); its rings live at the top of the upper one.
    const a = await SimGuest.start({ socketPath: sa, ramBytes: 1024 * MiB, layout: 'numa' });
    guests.push(a);
    const b = await guest(sb, 256 * MiB);
    a.mem.touch(0, a.mem.usableEnd, 0xa5); // the first byte of every page (the rings' area above is left alone)
    b.mem.touch(0, b.mem.usableEnd, 0x5b);
    const [lower, upper] = a.mem.regions as [typeof a.mem.regions[0], typeof a.mem.regions[0]];
    const { VHOST_USER } = await import('../sim/frontend.js');
    const setMemTable = () => {
      const regionBytes = (r: typeof lower) => {
        const x = Buffer.alloc(32);
        x.writeBigUInt64LE(BigInt(r.gpa), 0);
        x.writeBigUInt64LE(BigInt(r.size), 8);
        x.writeBigUInt64LE(a.mem.hostAddr + BigInt(r.offset), 16);
        x.writeBigUInt64LE(BigInt(r.offset), 24);
        return x;
      };
      const head = Buffer.alloc(8);
      head.writeUInt32LE(2, 0);
      a.fe.acked(VHOST_USER.SET_MEM_TABLE, Buffer.concat([head, regionBytes(lower), regionBytes(upper)]), [a.mem.fd, a.mem.fd]);
    };
    // A balloons 448 MiB of its lower region (contiguous: its thread gets long jobs at once).
    const aPfns = Array.from({ length: (448 * MiB) / PAGE }, (_, i) => 256 + i);
    const aInflate = (async () => {
      for (let i = 0; i < aPfns.length; i += 256 * 64) {
        await a.inflate(Math.min(256 * 64, aPfns.length - i), { pfns: aPfns.slice(i, i + 256 * 64), updateSize: 'end' });
        // While the thread works on it: the lower region out and back (a new mapping), or the whole table anew.
        if ((i / (256 * 64)) % 2 === 0) {
          a.memTable.sync([upper]);
          a.memTable.sync([lower, upper]);
        } else {
          setMemTable();
        }
      }
    })();
    // B meanwhile inflates and deflates, its pages checked.
    const everB = new Set<number>();
    for (let round = 0; round < 8; round++) {
      for (const p of await b.inflate(4096)) everB.add(p);
      await b.deflate(2048);
    }
    await aInflate;
    // Until the discards are over: the memfds' allocation stops changing for 1.5 s (pages wait at most 1 s).
    const settle = async (g: SimGuest) => {
      const deadline = Date.now() + 30_000;
      let last = -1;
      let since = Date.now();
      while (Date.now() < deadline && Date.now() - since < 1500) {
        const now = g.mem.allocatedBytes();
        if (now !== last) {
          last = now;
          since = Date.now();
        }
        await new Promise((r) => setTimeout(r, 100));
      }
    };
    await Promise.all([settle(a), settle(b)]);
    const stB = await status('b');
    // B: every page it never ballooned has its data; its balloon is freed.
    const ballooned = new Set(b.balloon);
    let bad = 0;
    for (let pfn = 0; pfn * PAGE < b.mem.usableEnd; pfn++) {
      if (!everB.has(pfn) && b.mem.bytes[pfn * PAGE] !== 0x5b) bad++;
    }
    expect(bad, 'B pages never ballooned that lost their data').toBe(0);
    expect(b.mem.backedBytes(0, b.mem.usableEnd), 'B\'s balloon freed').toBeLessThanOrEqual(b.mem.usableEnd - ballooned.size * PAGE);
    for (const p of ballooned) expect(b.mem.isBacked(p * PAGE, PAGE)).toBe(false);
    expect(stB.balloonBytes).toBe(ballooned.size * PAGE);
    expect(stB.counters.badInput).toEqual({});
    // A: nothing outside its balloon was discarded (its upper region, the rest of the lower one).
    const aBallooned = new Set(a.balloon);
    let aBad = 0;
    for (let pfn = 0; pfn * PAGE < a.mem.usableEnd; pfn++) {
      if (!aBallooned.has(pfn) && a.mem.bytes[pfn * PAGE] !== 0xa5) aBad++;
    }
    expect(aBad, 'A pages outside its balloon that lost their data').toBe(0);
    const stA = await status('a');
    expect(stA.connected).toBe(true);
    // A's own balloon was freed (a chunk whose region was out at that moment fails and is counted).
    const freed = aPfns.length * PAGE - a.mem.backedBytes(aPfns[0]! * PAGE, aPfns.length * PAGE);
    console.log(`[isolation] A ballooned ${aPfns.length * PAGE / MiB} MiB, its table changed ${Math.ceil(aPfns.length / (256 * 64))} times meanwhile: `
      + `${(freed / MiB).toFixed(0)} MiB freed, ${stA.counters.badInput.discard_failed ?? 0} failed discards; B: ${ballooned.size} pages ballooned, every other page intact`);
    expect(freed).toBeGreaterThan(0);
  }, 120_000);
});
