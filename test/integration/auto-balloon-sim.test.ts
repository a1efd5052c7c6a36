// Automatic ballooning in the real daemon, end to end without a VM: real
// vmpressure events from a squeezed child memcg reach the daemon
// (--pressure vmpressure --memcg), the policy raises num_pages in 32 MiB
// steps, and the simulated guest gets CONFIG_CHANGE and inflates. The rate
// limit collapses the storm; with the source design's settings the same
// storm runs the target to the ceiling.
import { afterEach, expect, it } from 'vitest';
import { ControlClient } from '../../src/control/client.js';
import type { HistoryRecord } from '../../src/control/controller.js';
import type { DaemonStatus } from '../../src/control/status.js';
import { DaemonProcess } from '../sim/daemon.js';
import { SimGuest } from '../sim/driver.js';
import { haveV1Memory, isRoot, makeCgroup, MiB, SEED_FIXED_ARGS, sleep, startAllocator, useCgroupRig, waitUntil } from './pressure-helpers.js';
import { SKIP, skipUnlessAll } from '../skip.js';

const STEP = 32 * MiB;
const GUEST_RAM = 512 * MiB;

skipUnlessAll([isRoot, SKIP.notRoot], [haveV1Memory, SKIP.noV1Memory]).describe('automatic ballooning: real vmpressure, real daemon, simulated guest', () => {
  const rig = useCgroupRig();
  let daemon: DaemonProcess | undefined;
  let guest: SimGuest | undefined;
  let ctl: ControlClient | undefined;
  let stopFollow = async () => {};

  afterEach(async () => {
    // The follower must be done before the guest's RAM is unmapped.
    await stopFollow();
    ctl?.close();
    guest?.close();
    await daemon?.stop();
    daemon = guest = ctl = undefined;
  });

  /** Daemon on a fresh 64 MiB memcg, a 512 MiB guest that follows num_pages and notes each CONFIG_CHANGE. */
  async function setUp(args: string[]) {
    const cg = makeCgroup({ limitBytes: 64 * MiB });
    rig.cgroups.push(cg);
    daemon = await DaemonProcess.start(['--pressure', 'vmpressure', '--memcg', cg.v1, '--stats-interval', '0', ...args]);
    guest = await SimGuest.start({ socketPath: daemon.socketPath, ramBytes: GUEST_RAM });
    ctl = await ControlClient.connect(daemon.controlPath);
    const configChanges: number[] = [];
    let stop = false;
    const g = guest;
    const follower = (async () => {
      while (!stop) if (await g.waitConfigChange(200)) {
        configChanges.push(Date.now());
        await g.followTarget();
      }
    })();
    stopFollow = async () => {
      stop = true;
      await follower;
    };
    const c = ctl;
    return {
      cg, configChanges,
      status: () => c.request<DaemonStatus>({ op: 'status' }),
      history: async () => (await c.request<{ decisions: HistoryRecord[] }>({ op: 'history' })).decisions,
    };
  }

  it('vmpressure events raise the target in 32 MiB steps, one per second; the guest gets CONFIG_CHANGE and inflates', async () => {
    const { cg, configChanges, status, history } = await setUp(SEED_FIXED_ARGS);
    expect((await status()).pressure.host.source).toBe(`vmpressure low on ${cg.v1}`);
    const a = startAllocator([cg.v1], 200, 8000);
    rig.allocators.push(a);
    let h: HistoryRecord[] = [];
    await waitUntil(() => configChanges.length > 0, 15_000, 'the first CONFIG_CHANGE');
    const events0 = (await status()).pressure.host.events;
    const t0 = Date.now();
    await sleep(4500);
    const events1 = (await status()).pressure.host.events;
    const windowMs = Date.now() - t0;
    await a.kill();
    await sleep(1500); // the last step finishes; no new events
    const s = await status();
    h = await history();
    await stopFollow();

    const inflates = h.filter((d) => d.rule === 'host-pressure-inflate');
    expect(inflates.length).toBeGreaterThanOrEqual(3);
    inflates.forEach((d, i) => {
      expect(d.newTargetBytes - d.oldTargetBytes).toBe(STEP);
      expect(d.newTargetBytes).toBe((i + 1) * STEP);
    });
    const times = inflates.map((d) => Date.parse(d.time));
    const gaps = times.slice(1).map((t, i) => t - times[i]!);
    // One step per --rate-limit (1 s, monotonic; wall-clock ms may round by 1).
    expect(Math.min(...gaps)).toBeGreaterThanOrEqual(999);
    // The storm: many more kernel events than steps, folded in the history.
    const eventsPerSecond = ((events1 - events0) * 1000) / windowMs;
    expect(s.pressure.host.events).toBeGreaterThan(5 * inflates.length);
    const rateLimited = h.filter((d) => d.rule === 'host-pressure-ignored' && d.cause === 'rate-limit');
    expect(rateLimited.some((d) => d.count > 1)).toBe(true);
    expect(h.length).toBeLessThan(s.pressure.host.events);
    // The guest heard of every step and followed: balloon = actual = target.
    expect(configChanges).toHaveLength(inflates.length);
    expect(s.targetBytes).toBe(inflates.length * STEP);
    expect(s.actualBytes).toBe(s.targetBytes);
    expect(s.balloonBytes).toBe(s.targetBytes);
    expect(guest!.pages.size * 4096).toBe(s.targetBytes);
    const figures = {
      hostEvents: s.pressure.host.events, eventsPerSecond: Math.round(eventsPerSecond), steps: inflates.length,
      historyEntries: h.length, stepGapsMs: gaps, firstEventToConfigChangeMs: configChanges[0]! - times[0]!,
      stepToConfigChangeMs: configChanges.map((c, i) => c - times[i]!),
    };
    console.log('daemon on real vmpressure, 1 s rate limit:', JSON.stringify(figures));
    // The first event steps at once (no earlier step to rate-limit): the guest hears within a few ms.
    expect(figures.firstEventToConfigChangeMs).toBeLessThan(500);
    expect(daemon!.find((l) => l.level >= 50)).toEqual([]);
  }, 60_000);

  it('with the source design\'s settings (--rate-limit 0 --no-wait-for-guest) the same storm runs to the ceiling at once', async () => {
    const { cg, configChanges, status, history } = await setUp(['--policy', 'seed', '--rate-limit', '0', '--no-wait-for-guest']);
    const a = startAllocator([cg.v1], 200, 8000);
    rig.allocators.push(a);
    await waitUntil(() => configChanges.length > 0, 15_000, 'the first CONFIG_CHANGE');
    const first = Date.now();
    let s = await status();
    while (s.targetBytes < GUEST_RAM && Date.now() - first < 3000) {
      await sleep(50);
      s = await status();
    }
    const ms = Date.now() - first;
    const h = await history();
    const inflates = h.filter((d) => d.rule === 'host-pressure-inflate');
    console.log('daemon on real vmpressure, seed settings:', JSON.stringify({ msToCeiling: ms, hostEvents: s.pressure.host.events, inflateDecisions: inflates.length }));
    // 16 steps of 32 MiB within 3 s, where the rate limit allows at most 4.
    expect(s.targetBytes).toBe(GUEST_RAM);
    expect(inflates.every((d) => (d.newTargetBytes - d.oldTargetBytes) % STEP === 0 || d.newTargetBytes === GUEST_RAM)).toBe(true);
    // Events after the ceiling (if the storm lasts) change nothing.
    expect(h.filter((d) => d.rule === 'host-pressure-inflate').every((d) => d.newTargetBytes <= GUEST_RAM)).toBe(true);
  }, 60_000);
});
