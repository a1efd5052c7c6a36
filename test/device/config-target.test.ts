// Targets reach the guest: num_pages in config space plus
// VHOST_USER_SLAVE_CONFIG_CHANGE_MSG; the guest's `actual` comes back.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ControlClient } from '../../src/control/client.js';
import type { DaemonStatus } from '../../src/control/status.js';
import { DaemonProcess } from '../sim/daemon.js';
import { SimGuest } from '../sim/driver.js';

const MiB = 1 << 20;
let daemon: DaemonProcess;
let guest: SimGuest | undefined;
let ctl: ControlClient;

beforeEach(async () => {
  daemon = await DaemonProcess.start(['--stats-interval', '0']);
  ctl = await ControlClient.connect(daemon.controlPath);
});
afterEach(async () => {
  ctl.close();
  guest?.close();
  guest = undefined;
  expect(await daemon.stop()).toBe(0);
});

describe('target changes', () => {
  it('reach the frontend as CONFIG_CHANGE_MSG and GET_CONFIG returns them', async () => {
    guest = await SimGuest.start({ socketPath: daemon.socketPath, ramBytes: 256 * MiB });
    expect(guest.readConfig()).toMatchObject({ num_pages: 0, actual: 0 });
    await ctl.request({ op: 'set-target', value: '48M', owner: 'test' });
    expect(await guest.waitConfigChange(2000)).toBe(true);
    expect(guest.readConfig().num_pages).toBe((48 * MiB) / 4096);
  });

  it('the guest follows the target and its actual is reported back', async () => {
    guest = await SimGuest.start({ socketPath: daemon.socketPath, ramBytes: 256 * MiB });
    const follower = guest.follow();
    await ctl.request({ op: 'set-target', value: '64M' });
    const deadline = Date.now() + 5000;
    let st: DaemonStatus;
    do {
      await new Promise((r) => setTimeout(r, 50));
      st = await ctl.request<DaemonStatus>({ op: 'status' });
    } while (st.actualBytes !== 64 * MiB && Date.now() < deadline);
    expect(st.actualBytes).toBe(64 * MiB);
    expect(st.balloonBytes).toBe(64 * MiB);
    expect(st.mode).toBe('manual');
    expect(st.hold?.owner).toBeTruthy();
    // Release and set 0: the guest deflates everything.
    await ctl.request({ op: 'set-target', value: '0M' });
    const deadline2 = Date.now() + 5000;
    do {
      await new Promise((r) => setTimeout(r, 50));
      st = await ctl.request<DaemonStatus>({ op: 'status' });
    } while (st.actualBytes !== 0 && Date.now() < deadline2);
    expect(st.actualBytes).toBe(0);
    expect(guest.balloon).toHaveLength(0);
    follower.stop();
    await follower.done;
  });

  it('a target above guest RAM minus the floor is refused with a hint', async () => {
    await ctl.request({ op: 'tune', params: { floorBytes: 200 * MiB } });
    guest = await SimGuest.start({ socketPath: daemon.socketPath, ramBytes: 256 * MiB });
    await daemon.waitForLog((l) => l.msg === 'features negotiated');
    await new Promise((r) => setTimeout(r, 100));
    await expect(ctl.request({ op: 'set-target', value: '100M' })).rejects.toThrow(/above the ceiling/);
    await expect(ctl.request({ op: 'set-target', value: '40M' })).resolves.toBeTruthy();
  });
});
