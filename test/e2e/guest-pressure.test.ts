// The guest half of the design with a real Linux guest: Debian's 6.1 kernel
// with our patched virtio_balloon.ko (qemu/guest/driver/), which sends
// MSG_PRESSURE on the message queue when the guest starts reclaiming, against
// our daemon and the patched QEMU. Host pressure comes from real vmpressure
// events of a memcg of ours that an allocator squeezes (QEMU is not in it).
// Guest pressure may only come from the message queue here: the stats-derived
// signals and deflate-on-OOM are off.
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { balloonState, memInfo, startVm, type Vm } from '../../lab/vm/index.js';
import {
  type Allocator, cleanupLeftovers, ensureSwap, haveV1Memory, isRoot, makeCgroup, startAllocator, type TempSwap,
  type TestCgroup,
} from '../integration/pressure-helpers.js';
import type { LogLine } from '../sim/daemon.js';
import { buildArtefacts, buildPatchedGuest, MiB, Rig } from './rig.js';
import { SKIP, skipUnlessAll } from '../skip.js';

const MEM_MIB = 512;
const EDGE_MS = 100;
const HYSTERESIS_MS = 5000;
const numbers: Record<string, number | string> = {};

/** A policy decision from the daemon's log (debug level: every ignored event too). */
interface Decision { at: number; rule: string; event: string; reason: string; oldMiB: number; newMiB: number }
const UNIT_MIB: Record<string, number> = { B: 1 / MiB, KiB: 1 / 1024, MiB: 1, GiB: 1024 };
const mibOf = (v: unknown): number => { // the log's sizes: "96 MiB", "0 B"
  const m = /^([\d.]+) (B|KiB|MiB|GiB)$/.exec(String(v));
  return m ? Number(m[1]) * UNIT_MIB[m[2]!]! : Number.NaN;
};
const decisions = (rig: Rig, since = 0): Decision[] => rig.daemon
  .find((l: LogLine) => typeof l.rule === 'string' && (l.time as number) >= since)
  .map((l) => ({
    at: l.time as number, rule: l.rule as string, event: l.event as string, reason: l.reason as string,
    oldMiB: mibOf(l.oldTarget), newMiB: mibOf(l.newTarget),
  }));
const isMessage = (d: Decision) => d.rule.startsWith('guest-pressure') && d.event.includes('(message');
const isHost = (d: Decision) => d.rule.startsWith('host-pressure');

/** `alloc` a bit more than the guest has free, so it must reclaim; resolves with the ack (or null on failure). */
async function squeezeGuest(vm: Vm): Promise<{ mib: number; done: Promise<unknown> }> {
  const m = memInfo(await vm.serial.waitFor((e) => e.type === 'meminfo', 10_000, vm.serial.cursor()));
  // More than MemTotal fails at malloc (no overcommit without swap); more than MemFree reclaims.
  const mib = Math.min(Math.floor((m?.MemFree ?? 0) / 1024) + 16, Math.floor((m?.MemTotal ?? 0) / 1024) - 8);
  return { mib, done: vm.command(`alloc ${mib}`, 120_000).catch(() => null) };
}

skipUnlessAll([isRoot, SKIP.notRoot], [haveV1Memory, SKIP.noV1Memory]).describe('a guest that reports pressure on the message queue (patched virtio_balloon)', () => {
  let rig: Rig;
  let memcg: TestCgroup | undefined;
  let swap: TempSwap | undefined;
  let hog: Allocator | undefined;
  let stockVm: Vm | undefined;

  beforeAll(async () => {
    await cleanupLeftovers();
    await buildArtefacts();
    await buildPatchedGuest();
    // Nothing runs in the memcg until test (c): no host event before then.
    swap = ensureSwap(512);
    memcg = makeCgroup({ limitBytes: 64 * MiB });
    rig = await Rig.start({
      patchedDriver: true, memMiB: MEM_MIB,
      daemonArgs: [
        '--pressure', 'vmpressure', '--memcg', memcg.v1, '--pressure-level', 'low',
        '--step', '32M', '--hysteresis', `${HYSTERESIS_MS / 1000}s`, '--policy', 'seed', '--wait-for-guest', '--rate-limit', '1s', '--max-balloon', '256M',
        '--stats-available-percent', '0', '--stats-swap-in', '0', '--stats-major-faults', '0', '--stats-stalls', '0',
        '--no-deflate-on-oom', '--no-page-reporting',
      ],
    });
    await rig.vm.ready(120_000);
    await rig.waitStatus((x) => x.connected, 10_000, 'connection');
  }, 20 * 60_000);

  afterAll(async () => {
    await hog?.kill();
    await stockVm?.shutdown();
    await rig?.stop();
    await memcg?.remove();
    swap?.remove();
    console.log(`guest-pressure e2e numbers: ${JSON.stringify(numbers)}`);
  });

  /** Manual target, reached, then released: automatic mode continues from it. */
  async function autoFrom(mib: number): Promise<void> {
    await rig.setTarget(`${mib}M`);
    await rig.vm.waitBalloonActual((MEM_MIB - mib) * MiB, 60_000);
    await rig.setTarget('release');
  }

  it('(d) the patched driver negotiates bit 23 and adds the queue "message" after the standard ones', async () => {
    const b = balloonState(await rig.vm.serial.waitFor((e) => e.type === 'balloon', 30_000));
    expect(b?.features).toEqual(expect.arrayContaining([0, 1, 23, 32]));
    expect((await rig.status()).features).toContain('MESSAGE_VQ');
    const setup = await rig.daemon.waitForLog((l) => Array.isArray(l.queues));
    expect(setup.queues).toEqual(['inflate', 'deflate', 'stats', 'message']);
  }, 60_000);

  it('(a) guest reclaim sends MSG_PRESSURE; the daemon deflates one 32 MiB step and the guest follows', async () => {
    await autoFrom(128);
    const before = await rig.status();
    expect(before.mode).toBe('auto');
    expect(before.counters.guestPressure.message).toBe(0);
    const t0 = Date.now();
    const { done } = await squeezeGuest(rig.vm);
    const allocDone = done.then(() => Date.now());
    const s = await rig.waitStatus((x) => x.counters.guestPressure.message > 0, 30_000, 'MSG_PRESSURE');
    const first = decisions(rig, t0).find(isMessage);
    expect(first).toMatchObject({ rule: 'guest-pressure-deflate', oldMiB: 128, newMiB: 96 });
    expect(s.decisions.some((d) => d.rule === 'guest-pressure-deflate' && d.oldTargetBytes - d.newTargetBytes === 32 * MiB)).toBe(true);
    await rig.vm.waitBalloonActual((MEM_MIB - 96) * MiB, 30_000, 0);
    numbers.allocToMessageMs = first!.at - t0;
    numbers.messageToGuestAt96MiBMs = Date.now() - first!.at; // upper bound (QMP polled every 100 ms)
    numbers.messagesDuringSqueeze = (await rig.status()).counters.guestPressure.message;
    // Reclaim can only start in the last ~16 MiB of the allocation (~100 MiB/s under TCG).
    numbers.messageBeforeAllocDoneMs = (await allocDone) - first!.at;
    await rig.vm.command('free');
  }, 120_000);

  it('(b) guest pressure during an inflation cancels it: target := current balloon size', async () => {
    await autoFrom(64);
    const m = memInfo(await rig.vm.serial.waitFor((e) => e.type === 'meminfo', 10_000, rig.vm.serial.cursor()));
    // Leave ~100 MiB free, then ask for 250 MiB of balloon: the inflation runs the guest into reclaim.
    await rig.vm.command(`alloc ${Math.floor((m?.MemFree ?? 0) / 1024) - 100}`, 120_000);
    const t0 = Date.now();
    await rig.setTarget('250M');
    await rig.setTarget('release');
    const s = await rig.waitStatus((x) => x.decisions.some((d) => Date.parse(d.time) >= t0 && d.rule === 'guest-pressure-cancel'),
      30_000, 'cancel');
    const cancel = decisions(rig, t0).find((d) => isMessage(d) && d.rule === 'guest-pressure-cancel')!;
    expect(cancel.oldMiB).toBe(250);
    expect(cancel.newMiB).toBeGreaterThan(64);
    expect(cancel.newMiB).toBeLessThan(250);
    numbers.cancelledAtMiB = cancel.newMiB;
    // The guest stops where it was (later messages may deflate further, one step each).
    const after = await rig.waitStatus((x) => x.actualBytes === x.targetBytes, 30_000, 'guest at the cancelled target');
    expect(after.targetBytes).toBeLessThanOrEqual(cancel.newMiB * MiB);
    for (const d of decisions(rig, t0).filter(isMessage).slice(1)) expect(d.newMiB).toBeLessThanOrEqual(d.oldMiB);
    await rig.vm.command('free');
  }, 120_000);

  it('rate limit: a storm of shrinker calls (drop_caches in a loop, 5 s) sends at most one message per second', async () => {
    await rig.setTarget('0'); // held: the daemon records the messages and ignores them
    await rig.vm.waitBalloonActual(MEM_MIB * MiB, 60_000);
    const t0 = Date.now();
    const since = rig.vm.serial.cursor();
    await rig.vm.command('reclaim 5', 60_000);
    const done = await rig.vm.serial.waitFor((e) => e.type === 'reclaim', 1000, since);
    await sleep(200);
    const drops = Number(done.fields.drops);
    const msgs = decisions(rig, t0).filter(isMessage);
    const gaps = msgs.slice(1).map((d, i) => d.at - msgs[i]!.at);
    const secs = Number(done.fields.end) - Number(done.fields.start); // guest uptime: 4-5 s
    numbers.rateLimit = `${drops} shrinker rounds in ${secs.toFixed(2)} s -> ${msgs.length} messages, gaps ${Math.min(...gaps)}-${Math.max(...gaps)} ms`;
    expect(drops).toBeGreaterThanOrEqual(50);
    // One message at once, then at most one a second.
    expect(msgs.length).toBeGreaterThanOrEqual(Math.floor(secs) - 1);
    expect(msgs.length).toBeLessThanOrEqual(Math.ceil(secs) + 1);
    expect(msgs.every((d) => d.rule === 'guest-pressure-ignored')).toBe(true);
    for (const g of gaps) expect(g).toBeGreaterThanOrEqual(990); // jiffies and ms rounding
  }, 120_000);

  it('(c) host pressure is ignored for the hysteresis after guest pressure, then inflates again', async () => {
    await autoFrom(64);
    const t0 = Date.now();
    hog = startAllocator([memcg!.v1], 200, 60_000);
    // Host events flow and inflate.
    await rig.waitStatus((x) => x.decisions.some((d) => Date.parse(d.time) >= t0 && d.rule === 'host-pressure-inflate'), 30_000, 'host inflate');
    const { done } = await squeezeGuest(rig.vm);
    await rig.waitStatus(() => decisions(rig, t0).some(isMessage), 30_000, 'MSG_PRESSURE');
    await done;
    await rig.vm.command('free');
    // Wait for a host inflate that comes after the last message's hysteresis.
    const inflateAfter = () => {
      const ds = decisions(rig, t0);
      const lastMsg = ds.filter(isMessage).pop();
      return lastMsg && ds.find((d) => d.rule === 'host-pressure-inflate' && d.at >= lastMsg.at);
    };
    await rig.waitStatus(() => Boolean(inflateAfter()), 30_000, 'host inflate after the hysteresis');
    await hog.kill();

    const ds = decisions(rig, t0);
    let ignoredInside = 0;
    let firstGap = Number.NaN;
    let m: Decision | undefined;
    // Log order is decision order (two decisions may share a millisecond).
    for (const h of ds) {
      if (isMessage(h)) m = h;
      if (!isHost(h) || !m) continue;
      if (h.at < m.at + HYSTERESIS_MS) {
        // Log times are wall clock, taken when each decision is logged; the policy's
        // clock is monotonic and read earlier. On a loaded 2-core machine the two
        // drift apart by tens of ms: allow 100 ms at the edge.
        if (h.at < m.at + HYSTERESIS_MS - EDGE_MS) {
          expect(h.rule, `${h.event} ${h.at - m.at} ms after a message`).toBe('host-pressure-ignored');
          expect(h.reason).toMatch(/^guest in pressure \(message\)/);
          ignoredInside++;
        }
      } else if (h.rule === 'host-pressure-inflate' && Number.isNaN(firstGap)) {
        firstGap = h.at - m.at;
      }
    }
    expect(ignoredInside).toBeGreaterThan(0);
    expect(firstGap).toBeGreaterThanOrEqual(HYSTERESIS_MS - EDGE_MS);
    numbers.hostEventsIgnoredInHysteresis = ignoredInside;
    numbers.messageToNextHostInflateMs = firstGap;
  }, 150_000);

  it('(d) the stock driver against the same daemon: no message queue negotiated, inflate and deflate work', async () => {
    const { qemu, img } = await buildArtefacts();
    await rig.vm.shutdown();
    await rig.waitStatus((x) => !x.connected, 10_000, 'disconnect');
    stockVm = await startVm({
      qemu, kernel: img.kernel, initrd: img.initrd, memMiB: MEM_MIB,
      balloon: { kind: 'vhost-user', socketPath: rig.daemon.socketPath },
      guest: { scenario: 'idle', reportSeconds: 1 },
    });
    await stockVm.ready(120_000);
    const b = balloonState(await stockVm.serial.waitFor((e) => e.type === 'balloon', 30_000));
    expect(b?.features).toEqual(expect.arrayContaining([0, 1, 32]));
    expect(b?.features).not.toContain(23);
    const s = await rig.waitStatus((x) => x.connected, 10_000, 'reconnect');
    expect(s.features).not.toContain('MESSAGE_VQ');
    const logs = rig.daemon.find((l) => Array.isArray(l.queues));
    expect(logs[logs.length - 1]?.queues).toEqual(['inflate', 'deflate', 'stats']);
    const t = performance.now();
    await rig.setTarget('64M');
    await stockVm.waitBalloonActual((MEM_MIB - 64) * MiB, 60_000);
    await rig.setTarget('0');
    await stockVm.waitBalloonActual(MEM_MIB * MiB, 60_000);
    numbers.stockInflateDeflate64MiBMs = Math.round(performance.now() - t);
  }, 120_000);
});

describe('the patched driver where the feature is not offered', () => {
  it('on QEMU\'s own virtio-balloon-pci it negotiates exactly what the stock driver does, and inflates and deflates', async () => {
    const { qemu, img: stock } = await buildArtefacts();
    const { img: patched } = await buildPatchedGuest();
    const features: Record<string, number[] | undefined> = {};
    for (const [name, img] of [['stock', stock], ['patched', patched]] as const) {
      const vm = await startVm({
        qemu, kernel: img.kernel, initrd: img.initrd, memMiB: MEM_MIB,
        balloon: { kind: 'stock', deflateOnOom: true, freePageReporting: true },
        guest: { scenario: 'idle', reportSeconds: 1 },
      });
      try {
        await vm.ready(120_000);
        features[name] = balloonState(await vm.serial.waitFor((e) => e.type === 'balloon', 30_000))?.features;
        await vm.qmp.balloon((MEM_MIB - 128) * MiB);
        await vm.waitBalloonActual((MEM_MIB - 128) * MiB, 60_000);
        await vm.qmp.balloon(MEM_MIB * MiB);
        await vm.waitBalloonActual(MEM_MIB * MiB, 60_000);
      } finally {
        await vm.shutdown();
      }
    }
    expect(features.patched).not.toContain(23);
    expect(features.patched).toEqual(features.stock);
  }, 240_000);
});
