// BalloonDevice and Controller in-process, over a fake transport: what the
// device does with each queue, and how targets, holds and resets travel
// between the controller and the frontend.
import { describe, expect, it } from 'vitest';
import { Controller } from '../../src/control/controller.js';
import { BalloonDevice } from '../../src/device/balloon.js';
import { silentLogger } from '../../src/log.js';
import { DEFAULT_PARAMS, SEED_FIXED_PARAMS, mergeParams } from '../../src/policy/params.js';
import { FakeTransport, PAGE } from './fake-transport.js';

const MiB = 1 << 20;
const bit = (n: number) => 1n << BigInt(n);
/** MUST_TELL_HOST, STATS_VQ, DEFLATE_ON_OOM, VERSION_1, the message queue (23): inflate 0, deflate 1, stats 2, message 3. */
const FEATURES = bit(0) | bit(1) | bit(2) | bit(32) | bit(23);
const [INFLATE, DEFLATE, STATS, MESSAGE] = [0, 1, 2, 3];
const peer = { pid: 1, uid: 0, gid: 0 };

function setup(params = SEED_FIXED_PARAMS) {
  const device = new BalloonDevice({ log: silentLogger(), statsIntervalMs: 0 });
  let now = 0;
  const controller = new Controller(device, {
    vm: 't', version: 'test', vhostSocket: null, params, autoEnabled: params.enabled, pressureDescription: 'none', log: silentLogger(), now: () => now,
  });
  const t = new FakeTransport();
  device.attach(t);
  t.start(FEATURES);
  return { device, controller, t, tick: (ms: number) => { now += ms; } };
}

const seq = (from: number, n: number) => Array.from({ length: n }, (_, i) => from + i);
/** Let the device finish work it continues in later turns (its per-turn budget). */
const turns = async (n = 5) => { for (let i = 0; i < n; i++) await new Promise((r) => setImmediate(r)); };

describe('queues', () => {
  it('an inflate buffer: pages counted once, acknowledged with length 0 and one notify; discarded through the thread', async () => {
    const { device, t } = setup();
    t.pfns(INFLATE, [...seq(100, 256), 100, 101]);
    await turns();
    expect(device.balloonPages).toBe(256);
    expect(t.pushed).toEqual([{ qidx: INFLATE, index: 0, len: 0 }]);
    expect(t.notified).toEqual([INFLATE]);
    expect(device.counters.badInput.pfn_already_ballooned).toBeUndefined(); // a repeat inside one buffer merges away
    device.flushDiscards();
    expect(t.worker.discardedPages).toBe(256);
    t.pfns(INFLATE, [100]);
    await turns();
    expect(device.counters.badInput.pfn_already_ballooned).toBe(1);
    expect(device.balloonPages).toBe(256);
  });

  it('a deflate takes pages out; a deflate of pages never inflated is bad input and no deflate-on-OOM', async () => {
    const { device, controller, t } = setup();
    controller.handle({ op: 'set-target', value: `${8 * 4}K` }, peer);
    t.pfns(INFLATE, seq(100, 8));
    await turns();
    // At its target, a guest deflating on its own is deflate-on-OOM ...
    t.pfns(DEFLATE, [100, 101, 5000]);
    await turns();
    expect(device.balloonPages).toBe(6);
    expect(device.counters.deflatedPages).toBe(2);
    expect(device.counters.badInput.pfn_not_ballooned).toBe(1);
    expect(device.counters.guestPressure['deflate-on-oom']).toBe(1);
    // ... a deflate of nothing it had is not.
    t.pfns(DEFLATE, [9000]);
    await turns();
    expect(device.counters.guestPressure['deflate-on-oom']).toBe(1);
    expect(controller.status().balloonBytes).toBe(6 * PAGE);
  });

  it('balloon compaction during an inflation (one PFN in, then one out) is no deflate-on-OOM', async () => {
    const { device, controller, t } = setup();
    controller.handle({ op: 'set-target', value: `${512 * 4}K` }, peer);
    t.pfns(INFLATE, seq(100, 256));
    await turns();
    // virtballoon_migratepage(): the new page on the inflate queue, the old one on the deflate queue.
    t.pfns(INFLATE, [900]);
    await turns();
    t.pfns(DEFLATE, [100]);
    await turns();
    expect(device.balloonPages).toBe(256);
    expect(device.counters.guestPressure['deflate-on-oom']).toBe(0);
    expect(controller.status().targetBytes).toBe(512 * PAGE);
    // A one-PFN deflate after a larger inflate is the guest's own: deflate-on-OOM.
    t.pfns(INFLATE, seq(1000, 8));
    await turns();
    t.pfns(DEFLATE, [101]);
    await turns();
    expect(device.counters.guestPressure['deflate-on-oom']).toBe(1);
  });

  it('a deflate of a page still waiting for its discard cuts it out of the job first', async () => {
    const { device, t } = setup();
    t.pfns(INFLATE, seq(100, 4));
    await turns();
    device.flushDiscards();
    t.pfns(INFLATE, seq(200, 4)); // waits (the hand-over wants more)
    await turns();
    t.pfns(DEFLATE, [201]);
    await turns();
    device.flushDiscards();
    expect(t.worker.discarded.flatMap((r) => seq(r.pfn, r.count)).sort((a, b) => a - b)).toEqual([100, 101, 102, 103, 200, 202, 203]);
  });

  it('the stats buffer is kept, handed back on request, and its sample reaches the controller', async () => {
    const { device, controller, t } = setup();
    const b = Buffer.alloc(20);
    b.writeUInt16LE(6, 0); b.writeBigUInt64LE(BigInt(40 * MiB), 2); // available_memory
    b.writeUInt16LE(5, 10); b.writeBigUInt64LE(BigInt(64 * MiB), 12); // total_memory
    t.post(STATS, [b]);
    await turns();
    expect(t.pushedOn(STATS)).toEqual([]);
    expect(controller.status().stats?.values).toEqual({ available_memory: 40 * MiB, total_memory: 64 * MiB });
    expect(device.requestStats()).toBe(true);
    expect(t.pushedOn(STATS)).toEqual([0]);
  });

  it('MSG_PRESSURE on the message queue cancels an inflation in progress', async () => {
    const { controller, t } = setup();
    controller.handle({ op: 'set-target', value: '8M' }, peer);
    controller.handle({ op: 'set-target', value: 'release' }, peer);
    t.pfns(INFLATE, seq(0, 256));
    await turns();
    t.post(MESSAGE, [Buffer.from(Uint32Array.from([1]).buffer)]);
    await turns();
    expect(controller.status().targetBytes).toBe(256 * PAGE);
  });
});

describe('targets between the controller and the frontend', () => {
  it('a manual target is written to num_pages and announced with CONFIG_CHANGE', async () => {
    const { controller, t } = setup();
    const before = t.configChanges;
    controller.handle({ op: 'set-target', value: '16M', owner: 'ops' }, peer);
    expect(t.config.readUInt32LE(0)).toBe((16 * MiB) / PAGE);
    expect(t.configChanges).toBe(before + 1);
    expect(controller.status()).toMatchObject({ mode: 'manual', hold: { owner: 'ops' } });
  });

  it('QMP balloon above the ceiling is lowered to it (cause ceiling), never refused', async () => {
    const { controller, t } = setup(mergeParams(SEED_FIXED_PARAMS, { maxBalloonBytes: 32 * MiB }));
    t.writeNumPages((48 * MiB) / PAGE);
    const s = controller.status();
    expect(s.targetBytes).toBe(32 * MiB);
    expect(controller.history.decisions.last(1)[0]).toMatchObject({ rule: 'manual-target', cause: 'ceiling' });
    expect(t.config.readUInt32LE(0)).toBe((32 * MiB) / PAGE);
  });

  it('an incoming migration: actual and num_pages of type MIGRATION before the queues start keep the target, automatic, no hold', async () => {
    const device = new BalloonDevice({ log: silentLogger(), statsIntervalMs: 0 });
    const controller = new Controller(device, {
      vm: 't', version: 'test', vhostSocket: null, params: DEFAULT_PARAMS, autoEnabled: true, pressureDescription: 'none', log: silentLogger(), now: () => 0,
    });
    const t = new FakeTransport();
    device.attach(t);
    t.writeActual((32 * MiB) / PAGE, 1); // post_load: actual, then num_pages (inflation under way)
    t.writeNumPages((40 * MiB) / PAGE, 1);
    t.start(FEATURES);
    expect(controller.status()).toMatchObject({ mode: 'auto', hold: null, targetBytes: 40 * MiB });
    expect(device.balloonPages).toBe((32 * MiB) / PAGE);
    expect(device.target).toBe((40 * MiB) / PAGE);
    expect(t.config.readUInt32LE(0), 'the renaming dip starts at once, also with an inflation under way').toBe(0);
    expect(controller.history.decisions.last(1)[0]).toMatchObject({ rule: 'incoming-target', cause: null });
  });

  it('after an incoming migration the guest names its balloon again: a dip to deflate the unnamed pages, the target again, the new pages discarded', async () => {
    const device = new BalloonDevice({ log: silentLogger(), statsIntervalMs: 0 });
    const controller = new Controller(device, {
      vm: 't', version: 'test', vhostSocket: null, params: DEFAULT_PARAMS, autoEnabled: true, pressureDescription: 'none', log: silentLogger(), now: () => 0,
    });
    const t = new FakeTransport();
    device.attach(t);
    const n = (16 * MiB) / PAGE;
    t.writeActual(n, 1);
    t.writeNumPages(n, 1);
    const changes = t.configChanges;
    t.start(FEATURES);
    expect(t.config.readUInt32LE(0), 'dip: num_pages below the balloon by its unnamed pages').toBe(0);
    expect(t.configChanges).toBe(changes + 1);
    t.pfns(DEFLATE, seq(1000, n)); // Linux deflates what it inflated last: unnamed here
    await turns();
    expect(device.balloonPages).toBe(0);
    expect(t.config.readUInt32LE(0), 'back to the target').toBe(n);
    expect(device.counters.guestPressure['deflate-on-oom'], 'a requested deflate, not deflate-on-OOM').toBe(0);
    t.pfns(INFLATE, seq(8000, n));
    await turns();
    device.flushDiscards();
    expect(t.worker.discardedPages).toBe(n);
    expect(device.balloonPages).toBe(n);
    expect(t.config.readUInt32LE(0)).toBe(n);
    expect(controller.status()).toMatchObject({ mode: 'auto', targetBytes: 16 * MiB });
  });

  it('a reconnect (actual of type MASTER) does not rename: the pages were discarded by the last daemon', async () => {
    const device = new BalloonDevice({ log: silentLogger(), statsIntervalMs: 0 });
    const t = new FakeTransport();
    device.attach(t);
    t.writeActual((16 * MiB) / PAGE);
    t.start(FEATURES);
    expect(t.config.readUInt32LE(0)).toBe(0);
    expect(t.configChanges).toBe(0);
  });

  it('an incoming target meets a hold on this side: the hold stays', async () => {
    const { controller, t } = setup();
    controller.handle({ op: 'set-target', value: '16M', owner: 'ops' }, peer);
    t.writeNumPages((64 * MiB) / PAGE, 1);
    expect(controller.status()).toMatchObject({ mode: 'manual', hold: { owner: 'ops' }, targetBytes: 16 * MiB });
    expect(t.config.readUInt32LE(0)).toBe((16 * MiB) / PAGE);
  });

  it('an operator target above the ceiling is refused with what to do', async () => {
    const { controller } = setup(mergeParams(SEED_FIXED_PARAMS, { maxBalloonBytes: 32 * MiB }));
    expect(() => controller.handle({ op: 'set-target', value: '48M' }, peer)).toThrow(/above the ceiling 32 MiB[\s\S]*raise --max-balloon/);
  });
});

describe('pause, reset and a new frontend', () => {
  it('a pause suspends pending discards; the same rings starting again resume them', async () => {
    const { device, t } = setup();
    t.lastAvail.set(INFLATE, 7);
    t.pfns(INFLATE, seq(500, 16));
    await turns();
    t.stopQueues(FEATURES);
    t.start(FEATURES);
    expect(t.worker.resumes).toBe(1);
    expect(t.worker.drops).toBe(0);
    expect(device.balloonPages).toBe(16);
  });

  it('a reset (actual = 0 after the stop) forgets the balloon and drops the pending discards', async () => {
    const { device, controller, t } = setup();
    t.lastAvail.set(INFLATE, 7);
    t.pfns(INFLATE, seq(500, 16));
    await turns();
    t.writeActual(16);
    t.stopQueues(FEATURES);
    t.writeActual(0);
    expect(device.balloonPages).toBe(0);
    expect(t.worker.drops).toBe(1);
    device.flushDiscards();
    expect(t.worker.discardedPages).toBe(0);
    expect(controller.status().balloonBytes).toBe(0);
  });

  it('a new frontend gets no target or hold of the last guest; the same guest reconnecting gets its hold back', async () => {
    const { device, controller, t } = setup();
    controller.handle({ op: 'set-target', value: '4M', owner: 'ops' }, peer);
    t.pfns(INFLATE, seq(0, 1024));
    await turns();
    t.writeActual(1024);
    t.close('gone');
    const fresh = new FakeTransport();
    device.attach(fresh);
    expect(fresh.config.readUInt32LE(0), 'num_pages presented to the new frontend').toBe(0);
    fresh.start(FEATURES);
    expect(controller.status()).toMatchObject({ mode: 'auto', targetBytes: 0, balloonBytes: 0, hold: null });

    fresh.close('gone again');
    const same = new FakeTransport();
    device.attach(same);
    same.writeActual(0); // (nothing: QEMU forwards only a non-zero actual)
    same.close('x');
    // The hold set on the first guest was forgotten with it; a new hold on
    // this one comes back when it reconnects with its balloon.
    const g = new FakeTransport();
    device.attach(g);
    g.start(FEATURES);
    controller.handle({ op: 'set-target', value: '2M', owner: 'ops' }, peer);
    g.pfns(INFLATE, seq(0, 512));
    await turns();
    g.writeActual(512);
    g.close('link dropped');
    const back = new FakeTransport();
    device.attach(back);
    back.writeActual(512); // QEMU re-sends actual before starting the queues
    back.start(FEATURES);
    expect(controller.status()).toMatchObject({ mode: 'manual', targetBytes: 2 * MiB, balloonBytes: 2 * MiB, hold: { owner: 'ops' } });
  });
});
