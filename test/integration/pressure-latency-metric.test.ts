// The host-pressure-to-CONFIG_CHANGE latency in the real daemon: a real
// vmpressure event from a squeezed memcg that raises the target is timed once,
// in the Prometheus Summary and in status; a manual target change and the
// events ignored at the ceiling are not.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, expect, it } from 'vitest';
import { parseSummary, scrapeUnix } from '../../bench/device/prom.js';
import { ControlClient } from '../../src/control/client.js';
import { PRESSURE_TO_CONFIG_CHANGE_METRIC } from '../../src/control/latency.js';
import type { DaemonStatus } from '../../src/control/status.js';
import { DaemonProcess } from '../sim/daemon.js';
import { SimGuest } from '../sim/driver.js';
import { haveV1Memory, isRoot, makeCgroup, MiB, SEED_FIXED_ARGS, sleep, startAllocator, useCgroupRig, waitUntil } from './pressure-helpers.js';
import { SKIP, skipUnlessAll } from '../skip.js';

skipUnlessAll([isRoot, SKIP.notRoot], [haveV1Memory, SKIP.noV1Memory]).describe('host pressure to CONFIG_CHANGE latency metric', () => {
  const rig = useCgroupRig();
  const cleanups: Array<() => Promise<void> | void> = [];

  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  it('one pressure event that moves the target is counted once, in the Summary and in status', async () => {
    const cg = makeCgroup({ limitBytes: 64 * MiB });
    rig.cgroups.push(cg);
    const dir = mkdtempSync(join(tmpdir(), 'vub-latency-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const metricsSock = join(dir, 'metrics.sock');
    // 32 MiB steps up to a 32 MiB ceiling: the first host step reaches it, later events are ignored.
    const daemon = await DaemonProcess.start(['--pressure', 'vmpressure', '--memcg', cg.v1, '--stats-interval', '0',
      ...SEED_FIXED_ARGS, '--max-balloon', '32M', '--metrics-listen', `unix:${metricsSock}`]);
    cleanups.push(() => daemon.stop().then(() => undefined));
    const guest = await SimGuest.start({ socketPath: daemon.socketPath, ramBytes: 512 * MiB });
    const follower = guest.follow();
    cleanups.push(async () => { follower.stop(); await follower.done; guest.close(); });
    const ctl = await ControlClient.connect(daemon.controlPath);
    cleanups.push(() => ctl.close());
    const status = () => ctl.request<DaemonStatus>({ op: 'status' });
    const summary = async () => parseSummary(await scrapeUnix(metricsSock), PRESSURE_TO_CONFIG_CHANGE_METRIC);

    // Labelled by VM: no series before the VM's first observation.
    expect(await summary()).toBeNull();
    // A manual change sends CONFIG_CHANGE too, but no pressure event caused it.
    await ctl.request({ op: 'set-target', value: '8M', owner: 'test' });
    await waitUntil(() => guest.pages.size === 8 * 256, 10_000, 'the guest to follow the manual target');
    await ctl.request({ op: 'set-target', value: 'release' });
    expect((await status()).pressure.host.toConfigChange.count).toBe(0);

    const a = startAllocator([cg.v1], 200, 8000);
    rig.allocators.push(a);
    let s = await status();
    for (const end = Date.now() + 15_000; s.targetBytes < 32 * MiB && Date.now() < end; s = await status()) await sleep(50);
    expect(s.targetBytes).toBe(32 * MiB);
    const eventsAtStep = s.pressure.host.events;
    await sleep(1500); // more events arrive and are ignored at the ceiling
    s = await status();
    const m = await summary();
    await a.kill();

    expect(s.pressure.host.events).toBeGreaterThan(eventsAtStep);
    expect(m?.count).toBe(1);
    expect(m?.sum).toBeGreaterThan(0);
    expect(m?.sum).toBeLessThan(1);
    for (const q of ['0.5', '0.9', '0.99']) expect(m?.quantiles[q]).toBeCloseTo(m?.sum ?? NaN, 9);
    const t = s.pressure.host.toConfigChange;
    expect(t.count).toBe(1);
    expect(t.p50Seconds).toBeCloseTo(m?.sum ?? NaN, 9);
    expect(t.p99Seconds).toBe(t.p50Seconds);
    console.log('host pressure to CONFIG_CHANGE, one event:', `${((m?.sum ?? 0) * 1e6).toFixed(0)} us`);
    expect(daemon.find((l) => l.level >= 50)).toEqual([]);
  }, 60_000);
});
