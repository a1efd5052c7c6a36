// A vanished memcg at run time, in the real daemon: the VM's memcg is removed
// (VM stopped) and created again (VM started) under the same name. The
// daemon logs EBALLOON_PRESSURE_LOST, does not take the kernel's removal
// signal for pressure, keeps serving, retries with backoff, and reacts to
// pressure in the new memcg.
import { afterEach, expect, it } from 'vitest';
import { ControlClient } from '../../src/control/client.js';
import type { DaemonStatus } from '../../src/control/status.js';
import { DaemonProcess, type LogLine } from '../sim/daemon.js';
import { haveV1Memory, isRoot, makeCgroup, MiB, SEED_FIXED_ARGS, sleep, startAllocator, uniqueName, useCgroupRig } from './pressure-helpers.js';
import { SKIP, skipUnlessAll } from '../skip.js';

const WARN = 40;

skipUnlessAll([isRoot, SKIP.notRoot], [haveV1Memory, SKIP.noV1Memory]).describe('daemon: the watched memcg vanishes and comes back', () => {
  const rig = useCgroupRig();
  let daemon: DaemonProcess | undefined;
  let ctl: ControlClient | undefined;

  afterEach(async () => {
    ctl?.close();
    await daemon?.stop();
    daemon = ctl = undefined;
  });

  it('is logged and retried, not a crash; pressure in the re-created memcg inflates', async () => {
    const name = uniqueName('lost');
    const cg = makeCgroup({ limitBytes: 64 * MiB, name });
    rig.cgroups.push(cg);
    const d = await DaemonProcess.start(['--pressure', 'vmpressure', '--memcg', cg.v1, '--stats-interval', '0', ...SEED_FIXED_ARGS]);
    daemon = d;
    const c = await ControlClient.connect(d.controlPath);
    ctl = c;
    const status = () => c.request<DaemonStatus>({ op: 'status' });
    await d.waitForLog((l) => l.msg === 'watching host memory pressure');

    const removedAt = Date.now();
    await cg.remove();
    const lost = await d.waitForLog((l) => l.msg === 'host pressure source lost; retrying');
    expect(lost.level).toBe(WARN);
    expect(lost.err).toMatch(/EBALLOON_PRESSURE_LOST: memcg .* was removed/);
    const retry = await d.waitForLog((l) => l.msg === 'host pressure source still unavailable', 3000);
    expect(retry.err).toMatch(/EBALLOON_PRESSURE_NOENT: cannot open .*memory.pressure_level/);
    // Still serving, and the removal signal was not counted as pressure.
    let s = await status();
    expect(s.pressure.host.events).toBe(0);
    expect(s.targetBytes).toBe(0);
    expect(d.exitCode).toBeNull();

    // The VM starts again: a memcg of the same name.
    const again = makeCgroup({ limitBytes: 64 * MiB, name });
    rig.cgroups.push(again);
    const back = await d.waitForLog((l) => l.msg === 'host pressure source back', 10_000);
    const backAfterMs = Date.now() - removedAt;
    expect(back.failures).toBe(1);
    const a = startAllocator([again.v1], 200, 10_000);
    rig.allocators.push(a);
    const end = Date.now() + 15_000;
    while ((s = await status()).targetBytes === 0 && Date.now() < end) await sleep(50);
    expect(s.pressure.host.events).toBeGreaterThan(0);
    expect(s.targetBytes).toBe(32 * MiB);
    const retries = d.find((l) => l.msg === 'host pressure source still unavailable').map((l: LogLine) => l.retryInMs);
    console.log('memcg lost and back:', JSON.stringify({ backAfterMs, retryDelaysMs: retries }));
    // Backoff: the first retry (after 1 s) failed, so the next comes 2 s later.
    expect(retries[0]).toBe(2000);
    expect(d.find((l) => l.level >= 50)).toEqual([]);
    expect(await d.stop()).toBe(0);
    daemon = undefined;
  }, 60_000);
});
