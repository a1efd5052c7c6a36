// Two real QEMU guests on one host daemon; kill -9 and a restart: both QEMUs
// (reconnect=) reattach, each device recovers its balloon from actual, and
// the manual holds and auto off come back from the state directory.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DaemonStatus } from '../../src/control/status.js';
import type { HostStatus } from '../../src/service/host.js';
import { startVm, type Vm } from '../../lab/vm/index.js';
import { DaemonProcess } from '../sim/daemon.js';
import { SKIP, skipUnless } from '../skip.js';
import { buildArtefacts, MiB } from './rig.js';

const MEM = 512;

skipUnless(process.getuid?.() === 0, SKIP.notRoot).describe('two QEMU guests on one host daemon across kill -9', () => {
  let daemon: DaemonProcess;
  const vms: Vm[] = [];

  beforeAll(async () => {
    const { qemu, img } = await buildArtefacts();
    daemon = await DaemonProcess.startHost();
    const sockets = [await daemon.addVm('vm1', { 'stats-interval': 1 }), await daemon.addVm('vm2', { 'stats-interval': 1 })];
    vms.push(...await Promise.all(sockets.map((socketPath) => startVm({
      qemu, kernel: img.kernel, initrd: img.initrd, memMiB: MEM,
      balloon: { kind: 'vhost-user', socketPath, reconnectSeconds: 1 }, guest: { scenario: 'idle', reportSeconds: 1 },
    }))));
    await Promise.all(vms.map((v) => v.ready(180_000)));
  }, 20 * 60_000);

  afterAll(async () => {
    await Promise.all(vms.map((v) => v.shutdown()));
    await daemon?.stop();
  });

  const status = (vm: string) => daemon.request<DaemonStatus>({ op: 'status', vm });
  async function waitFor(vm: string, pred: (s: DaemonStatus) => boolean, what: string, ms = 60_000): Promise<DaemonStatus> {
    const end = Date.now() + ms;
    for (;;) {
      const s = await status(vm).catch(() => null);
      if (s && pred(s)) return s;
      if (Date.now() > end) throw new Error(`${vm}: no ${what} within ${ms} ms (last ${JSON.stringify(s && { t: s.targetBytes, a: s.actualBytes, b: s.balloonBytes, c: s.connected })})`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  it('both reattach; balloons recovered from actual; holds and auto off come back', async () => {
    await daemon.request({ op: 'set-target', vm: 'vm1', value: '128M', owner: 'ops' });
    await daemon.request({ op: 'set-target', vm: 'vm2', value: '64M', owner: 'ops' });
    await daemon.request({ op: 'auto', vm: 'vm2', enabled: false });
    await vms[0]!.waitBalloonActual((MEM - 128) * MiB, 120_000);
    await vms[1]!.waitBalloonActual((MEM - 64) * MiB, 120_000);
    await waitFor('vm1', (s) => s.balloonBytes === 128 * MiB, 'balloon 128 MiB');
    await waitFor('vm2', (s) => s.balloonBytes === 64 * MiB, 'balloon 64 MiB');

    const dir = daemon.dir;
    await daemon.stop('SIGKILL', true);
    // The guests run on without a backend.
    expect((await vms[0]!.command('ping', 30_000)).fields.rc).toBe('0');
    const t0 = Date.now();
    daemon = await DaemonProcess.startHost([], {}, dir);
    const host = await (async () => {
      for (;;) {
        const h = await daemon.request<HostStatus>({ op: 'host-status' });
        if (h.connected === 2 || Date.now() - t0 > 60_000) return h;
        await new Promise((r) => setTimeout(r, 200));
      }
    })();
    expect(host.connected, 'both QEMUs reattached').toBe(2);
    console.log(`host daemon kill -9 -> both QEMUs reattached in ${Date.now() - t0} ms`);
    const s1 = await waitFor('vm1', (s) => s.balloonBytes === 128 * MiB, 'recovered balloon');
    const s2 = await waitFor('vm2', (s) => s.balloonBytes === 64 * MiB, 'recovered balloon');
    expect([s1.mode, s1.hold?.owner, s1.targetBytes]).toEqual(['manual', 'ops', 128 * MiB]);
    expect([s2.mode, s2.hold?.owner, s2.targetBytes, s2.params.autoEnabled]).toEqual(['manual', 'ops', 64 * MiB, false]);
    // Nothing deflated or re-inflated meanwhile, and the devices are driven again.
    expect(await vms[0]!.waitBalloonActual((MEM - 128) * MiB, 10_000)).toBe((MEM - 128) * MiB);
    await daemon.request({ op: 'set-target', vm: 'vm1', value: 'release' });
    await daemon.request({ op: 'set-target', vm: 'vm1', value: '0M', owner: 'ops' });
    await vms[0]!.waitBalloonActual(MEM * MiB, 120_000);
    expect((await vms[1]!.command('ping', 30_000)).fields.rc).toBe('0');
  }, 600_000);
});
