// Guest RAM on 2 MiB hugetlbfs pages, a real Debian guest under the patched
// QEMU: ballooning 512 MiB of 1 GiB must give the host back whole huge pages
// (HugePages_Free), with stock virtio-balloon-pci in the same run beside it
// (QEMU tracks partial huge pages within one element only: Linux sends 1 MiB
// per element, so it frees none of a 2 MiB page). Then our patched guest
// driver with inflate_order=9 (it inflates from free 2 MiB blocks), deflate,
// and free page reporting on the same RAM.
import { readFileSync, writeFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { type BalloonChoice, startVm, type Vm } from '../../lab/vm/index.js';
import { DaemonProcess } from '../sim/daemon.js';
import { SKIP, skipUnless } from '../skip.js';
import { buildArtefacts, buildPatchedGuest } from './rig.js';

const MiB = 2 ** 20;
const MEM = 1024;
const BALLOON = 512;
const NR = '/proc/sys/vm/nr_hugepages';
const hugeFree = () => Number(/^HugePages_Free:\s+(\d+)/m.exec(readFileSync('/proc/meminfo', 'utf8'))![1]);
const figures: Record<string, unknown> = {};

skipUnless(process.getuid?.() === 0, SKIP.notRoot).describe('guest RAM on 2 MiB huge pages: whole huge pages back to the host', () => {
  let daemon: DaemonProcess;
  let reporting: DaemonProcess;
  let nrBefore = 0;
  const vms: Vm[] = [];

  beforeAll(async () => {
    await buildArtefacts();
    nrBefore = Number(readFileSync(NR, 'utf8'));
    writeFileSync(NR, String(nrBefore + MEM / 2 + 16)); // one 1 GiB guest at a time, and some slack
    if (hugeFree() < MEM / 2) throw new Error(`the kernel gave only ${hugeFree()} free 2 MiB pages, want ${MEM / 2}`);
    // The balloon alone (free page reporting would return the guest's freed memory as well), and one with reporting.
    daemon = await DaemonProcess.start(['--stats-interval', '0', '--no-page-reporting']);
    reporting = await DaemonProcess.start(['--stats-interval', '0']);
  }, 20 * 60_000);

  afterAll(async () => {
    await Promise.all(vms.map((v) => v.shutdown()));
    await daemon?.stop();
    await reporting?.stop();
    writeFileSync(NR, String(nrBefore));
    console.log(`huge pages: ${JSON.stringify(figures)}`);
  });

  /** Boot on huge pages, touch most of RAM and free it (the host holds it); order9: our driver, inflate_order=9. */
  async function bootTouched(balloon: BalloonChoice, touchMiB = 850, order9 = false): Promise<Vm> {
    const { qemu } = await buildArtefacts();
    const { img } = order9 ? await buildPatchedGuest() : await buildArtefacts();
    const vm = await startVm({ qemu, kernel: img.kernel, initrd: img.initrd, memMiB: MEM, hugePageMiB: 2, balloon,
      ...(order9 ? { guest: { extra: ['virtio_balloon.inflate_order=9'] } } : {}) });
    vms.push(vm);
    await vm.ready(180_000);
    await vm.command(`alloc ${touchMiB}`, 180_000);
    await vm.command('free', 60_000);
    return vm;
  }

  /** ... then balloon 512 MiB: the huge pages freed. */
  async function balloonHalf(name: string, balloon: BalloonChoice, order9 = false): Promise<{ vm: Vm; freedPages: number }> {
    const vm = await bootTouched(balloon, 850, order9);
    await sleep(1000);
    const before = hugeFree();
    const t0 = Date.now();
    await vm.qmp.balloon((MEM - BALLOON) * MiB);
    await vm.waitBalloonActual((MEM - BALLOON) * MiB, 180_000);
    const inflateMs = Date.now() - t0;
    await sleep(1500); // deferred discards done
    const freedPages = hugeFree() - before;
    figures[name] = { freedHugePages: freedPages, freedMiB: freedPages * 2, ofBallooned: `${((freedPages * 2 * 100) / BALLOON).toFixed(1)} %`, inflateMs };
    return { vm, freedPages };
  }

  it('stock virtio-balloon-pci: ballooning 512 MiB frees (almost) no huge page', async () => {
    const { vm, freedPages } = await balloonHalf('stock', { kind: 'stock' });
    expect(freedPages).toBeLessThan(0.05 * (BALLOON / 2));
    await vm.shutdown();
  }, 15 * 60_000);

  // Issue 18's target is 95 % (measured 94.5-97.7 %: a huge page that also holds a page the guest
  // uses, or pages it never touched, gives nothing); the test checks the behaviour with a margin.
  it('our device: ballooning 512 MiB frees (nearly) all of it in whole huge pages; deflate gives it back and the guest uses it', async () => {
    const { vm, freedPages } = await balloonHalf('ours', { kind: 'vhost-user', socketPath: daemon.socketPath });
    try {
      await oursAfter(vm, freedPages);
    } finally {
      await vm.shutdown(); // its huge pages back for the next guest
    }
  }, 15 * 60_000);

  // The guest side of issue 18's "prefer to complete huge pages": whole 2 MiB blocks where free.
  it('our device and our guest driver with inflate_order=9: at least 95 % of the balloon in whole huge pages; deflate gives it back', async () => {
    const { vm, freedPages } = await balloonHalf('oursOrder9', { kind: 'vhost-user', socketPath: daemon.socketPath }, true);
    try {
      expect((await vm.serial.waitFor((e) => e.type === 'modules', 1000)).fields.params).toBe('virtio_balloon.inflate_order=9');
      expect(freedPages * 2).toBeGreaterThanOrEqual(0.95 * BALLOON);
      await oursAfter(vm, freedPages);
    } finally {
      await vm.shutdown();
    }
  }, 15 * 60_000);

  async function oursAfter(vm: Vm, freedPages: number): Promise<void> {
    expect(freedPages * 2).toBeGreaterThanOrEqual(0.9 * BALLOON);
    expect(daemon.find((l) => l.msg === 'discard_failed')).toEqual([]);
    const free0 = hugeFree();
    await vm.qmp.balloon(MEM * MiB);
    await vm.waitBalloonActual(MEM * MiB, 180_000);
    const r = await vm.command('alloc 800', 180_000);
    expect(r.fields.rc).toBe('0');
    expect(free0 - hugeFree()).toBeGreaterThan(0.8 * freedPages); // the guest's use faulted the freed huge pages back in
    figures.oursDeflate = { hugePagesTakenBackByTheGuest: free0 - hugeFree() };
  }

  it('free page reporting on huge-page RAM gives back whole huge pages of what the guest frees', async () => {
    const vm = await bootTouched({ kind: 'vhost-user', socketPath: reporting.socketPath }, 64);
    await sleep(8000); // what boot and the first touch freed is reported
    const before = hugeFree();
    await vm.command('alloc 800', 180_000);
    const taken = before - hugeFree();
    await vm.command('free', 60_000);
    await sleep(8000); // Linux reports free pageblocks (2 MiB here) 2 s after they pile up
    const back = hugeFree() - (before - taken);
    figures.oursReporting = { allocMiB: 800, hugePagesTaken: taken, reportedBackHugePages: back };
    expect(taken * 2).toBeGreaterThan(0.5 * 800);
    expect(back).toBeGreaterThan(0.8 * taken);
    expect(reporting.find((l) => l.msg === 'discard_failed')).toEqual([]);
  }, 15 * 60_000);
});
