// The seed's guest-pressure rules in the real daemon, driven by the simulated
// guest: MSG_PRESSURE cancels an inflation in progress, or deflates one step;
// stats that show the guest short of memory deflate too.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ControlClient } from '../../src/control/client.js';
import type { DaemonStatus, DecisionRecord } from '../../src/control/status.js';
import { DaemonProcess } from '../sim/daemon.js';
import { SimGuest } from '../sim/driver.js';
import { SEED_FIXED_ARGS } from './pressure-helpers.js';

const MiB = 2 ** 20;
const MSG_PRESSURE = 1;

let daemon: DaemonProcess;
let guest: SimGuest;
let ctl: ControlClient;

async function start(args: string[], autoStats = false): Promise<void> {
  daemon = await DaemonProcess.start(['--step', '4M', ...SEED_FIXED_ARGS, ...args]);
  guest = await SimGuest.start({ socketPath: daemon.socketPath, ramBytes: 128 * MiB, autoStats });
  ctl = await ControlClient.connect(daemon.controlPath);
}

afterEach(async () => {
  ctl?.close();
  guest?.close();
  await daemon?.stop();
});

const status = () => ctl.request<DaemonStatus>({ op: 'status' });
async function until(pred: (s: DaemonStatus) => boolean, what: string, ms = 5000): Promise<DaemonStatus> {
  const end = Date.now() + ms;
  for (;;) {
    const s = await status();
    if (pred(s)) return s;
    if (Date.now() > end) throw new Error(`no ${what} within ${ms} ms (target ${s.targetBytes}, actual ${s.actualBytes})`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
const lastMove = (s: DaemonStatus): DecisionRecord | undefined =>
  [...s.decisions].reverse().find((d) => d.oldTargetBytes !== d.newTargetBytes);

/** Target `mib` held manually, the guest following (or not), then handed to automatic mode. */
async function balloonThenRelease(mib: number, follow: boolean): Promise<void> {
  await ctl.request({ op: 'set-target', value: `${mib}M`, owner: 'test' });
  if (follow) {
    await guest.waitConfigChange();
    await guest.followTarget();
    await until((s) => s.actualBytes === mib * MiB, 'guest at target');
  }
  await ctl.request({ op: 'set-target', value: 'release', owner: 'test' });
  await until((s) => s.mode === 'auto' && s.targetBytes === mib * MiB, 'automatic mode');
}

describe('guest pressure with the simulated guest', () => {
  beforeEach(async () => start([]));

  it('MSG_PRESSURE during an inflation in progress cancels it: target := current balloon size', async () => {
    await balloonThenRelease(16, false); // the guest has not inflated anything yet
    await guest.sendMessages([MSG_PRESSURE]);
    const s = await until((x) => x.targetBytes === 0, 'cancellation');
    expect(lastMove(s)?.rule).toBe('guest-pressure-cancel');
    expect(s.pressure.guest.inPressure).toBe(true);
    expect(s.counters.guestPressure.message).toBe(1);
  });

  it('MSG_PRESSURE with no inflation in progress deflates one step, and never below 0', async () => {
    await balloonThenRelease(6, true);
    await guest.sendMessages([MSG_PRESSURE]);
    let s = await until((x) => x.targetBytes === 2 * MiB, 'one 4 MiB step down');
    expect(lastMove(s)?.rule).toBe('guest-pressure-deflate');
    await guest.followTarget();
    await until((x) => x.actualBytes === 2 * MiB, 'guest deflated');
    await guest.sendMessages([MSG_PRESSURE, MSG_PRESSURE]); // less than a step left: clamp at 0
    await until((x) => x.targetBytes === 0, 'target 0');
    await new Promise((r) => setTimeout(r, 100));
    expect((await status()).targetBytes).toBe(0);
  });
});

describe('stats-derived guest pressure with the simulated guest', () => {
  beforeEach(async () => start(['--stats-interval', '0.2'], true));

  it('MemAvailable under 10 % of MemTotal deflates the balloon', async () => {
    await balloonThenRelease(16, true);
    // The guest's own use leaves almost nothing available.
    guest.vm.usedBytes = 128 * MiB - 16 * MiB - 2 * MiB;
    guest.vm.cacheBytes = 0;
    const s = await until((x) => x.targetBytes < 16 * MiB, 'stats-derived deflate');
    const d = lastMove(s);
    expect(d?.rule).toMatch(/^guest-pressure-(deflate|cancel)$/);
    expect(d?.event).toMatch(/stats: MemAvailable/);
    expect(s.pressure.guest.lastSignal).toMatch(/stats/);
  });

  it('major faults rising by 2000 between samples deflate one step', async () => {
    await balloonThenRelease(16, true);
    guest.vm.majorFaults += 5000; // MemAvailable stays high: only the counter signals
    const s = await until((x) => x.targetBytes < 16 * MiB, 'stats-derived deflate');
    const d = lastMove(s);
    expect(d?.rule).toBe('guest-pressure-deflate');
    expect(d?.event).toMatch(/stats: major faults \+5000/);
    expect(d?.event).not.toMatch(/MemAvailable/);
    expect(s.targetBytes).toBe(12 * MiB);
    expect(s.pressure.guest).toMatchObject({ inPressure: true, lastSignal: 'stats' });
  });
});

describe('deflate-on-OOM with the simulated guest', () => {
  beforeEach(async () => start(['--hysteresis', '2s']));

  it('counts as guest pressure: the inflation in progress stops at the size the guest kept', async () => {
    await ctl.request({ op: 'set-target', value: '16M', owner: 'test' });
    await guest.waitConfigChange();
    await guest.inflate(2048); // half way to 4096 pages
    await ctl.request({ op: 'set-target', value: 'release', owner: 'test' });
    await until((x) => x.mode === 'auto' && x.balloonBytes === 8 * MiB, 'automatic mode, balloon at 8 MiB');
    // virtio_balloon_oom_notify(): 256 pages back, told on the deflate queue, then `actual`.
    expect(await guest.oomNotify()).toHaveLength(256);
    const s = await until((x) => x.targetBytes !== 16 * MiB, 'the OOM to reach the policy');
    // Target := the balloon after the OOM deflate (counted from the queues), not before it.
    expect(s.targetBytes).toBe((2048 - 256) * 4096);
    expect(lastMove(s)?.rule).toBe('guest-pressure-cancel');
    expect(lastMove(s)?.event).toMatch(/deflate-on-oom/);
    expect(s.pressure.guest).toMatchObject({ inPressure: true, lastSignal: 'deflate-on-oom' });
    expect(s.counters.guestPressure['deflate-on-oom']).toBe(1);
    // A deflate the daemon asked for is not an OOM.
    await guest.sendMessages([MSG_PRESSURE]);
    await until((x) => x.targetBytes === (2048 - 256 - 1024) * 4096, 'one 4 MiB step down');
    await guest.followTarget();
    const after = await until((x) => x.actualBytes === x.targetBytes, 'the guest to deflate');
    expect(after.counters.guestPressure['deflate-on-oom']).toBe(1);
  });
});
