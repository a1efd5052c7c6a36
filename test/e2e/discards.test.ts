// The QEMU device takes part in QEMU's RAM discard protocol: it requires
// coordinated discards (so a device that pins RAM is refused), and postcopy,
// which cannot take discards, is refused with our backend on the incoming
// side. No guest needs to boot: QEMU's answers come at once.
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { type BalloonChoice, startVm, type Vm } from '../../lab/vm/index.js';
import { DaemonProcess } from '../sim/daemon.js';
import { SKIP, skipUnless } from '../skip.js';
import { buildArtefacts } from './rig.js';

// A userspace NVMe driver (block/nvme.c) maps guest RAM for DMA through VFIO:
// it disables RAM discards before it even looks for the (absent) device.
const NVME = { driver: 'nvme', 'node-name': 'nvme0', device: '0000:00:1f.7', namespace: 1 };

skipUnless(process.getuid?.() === 0, SKIP.notRoot).describe('RAM discards: pinned RAM and postcopy', () => {
  let daemon: DaemonProcess;
  const vms: Vm[] = [];

  beforeAll(async () => {
    await buildArtefacts();
    daemon = await DaemonProcess.start(['--no-page-reporting']);
  }, 20 * 60_000);

  afterAll(async () => {
    await Promise.all(vms.map((v) => v.shutdown()));
    await daemon?.stop();
  });

  async function boot(balloon: BalloonChoice, extraArgs: string[] = []): Promise<Vm> {
    const { qemu, img } = await buildArtefacts();
    const vm = await startVm({ qemu, kernel: img.kernel, initrd: img.initrd, memMiB: 256, balloon, extraArgs });
    vms.push(vm);
    return vm;
  }

  const blockdevAddError = (vm: Vm): Promise<string> =>
    vm.qmp.execute('blockdev-add', NVME).then(() => 'added', (e: Error) => e.message);

  it('with our device a VFIO user is refused (discards required); with stock virtio-balloon it gets as far as the device', async () => {
    const ours = await boot({ kind: 'vhost-user', socketPath: daemon.socketPath });
    expect(await blockdevAddError(ours)).toMatch(/Cannot set discarding of RAM broken/);
    await ours.shutdown();
    const stock = await boot({ kind: 'stock' });
    const err = await blockdevAddError(stock);
    expect(err).not.toMatch(/discarding of RAM/);
    expect(err).not.toBe('added');
  }, 120_000);

  it('incoming postcopy is refused with our backend (it offers no PAGEFAULT); stock QEMU accepts it', async () => {
    const ours = await boot({ kind: 'vhost-user', socketPath: daemon.socketPath }, ['-incoming', 'defer']);
    const caps = { capabilities: [{ capability: 'postcopy-ram', state: true }] };
    const err = await ours.qmp.execute('migrate-set-capabilities', caps).then(() => 'accepted', (e: Error) => e.message);
    expect(err).toMatch(/Postcopy is not supported/);
    await sleep(100);
    expect(ours.stderr()).toMatch(/vhost-user backend not capable of postcopy/);
    await ours.shutdown();
    const stock = await boot({ kind: 'stock' }, ['-incoming', 'defer']);
    await expect(stock.qmp.execute('migrate-set-capabilities', caps)).resolves.toBeDefined();
  }, 120_000);
});
