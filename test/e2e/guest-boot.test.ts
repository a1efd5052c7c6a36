// The guest image and the VM launcher against the patched QEMU, with QEMU's
// stock virtio-balloon-pci: proves the test rig (kernel, initramfs, serial
// protocol, QMP, host memory readings) before the vhost-user tests use it.
import { performance } from 'node:perf_hooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  balloonState,
  guestImage,
  isScenario,
  memInfo,
  qemuBinary,
  startVm,
  type Vm,
  type VubEvent,
} from '../../lab/vm/index.js';

const MEM_MIB = 1024;
const BALLOON_MIB = 512;
const MiB = 1024 * 1024;
const PAGES_PER_MIB = 256; // balloon pages are 4 KiB

const netBalloonPages = (e: VubEvent): number | undefined => {
  const b = balloonState(e);
  return b ? b.inflated - b.deflated : undefined;
};

describe('guest image boots under the patched QEMU (stock balloon)', () => {
  let vm: Vm | undefined;
  let startedAt = 0;
  const timing: Record<string, string> = {};

  beforeAll(async () => {
    const qemu = await qemuBinary();
    const t = performance.now();
    const img = await guestImage();
    timing.guestImage = `${((performance.now() - t) / 1000).toFixed(1)} s`;
    startedAt = performance.now();
    vm = await startVm({
      qemu,
      kernel: img.kernel,
      initrd: img.initrd,
      memMiB: MEM_MIB,
      // No free page reporting: the host memory drop below must come from the balloon alone.
      balloon: { kind: 'stock', deflateOnOom: true, freePageReporting: false },
      guest: { scenario: 'hold:64', reportSeconds: 1 },
    });
  }, 20 * 60_000); // a cold qemu/build.sh takes minutes

  afterAll(async () => {
    if (vm) await vm.shutdown();
    console.log(`guest-boot timings: ${JSON.stringify(timing)}`);
  });

  it('loads the virtio modules and binds virtio_balloon to the device (id 5)', async () => {
    const v = vm as Vm;
    const ready = await v.ready(120_000);
    timing.bootToReady = `${((ready.at - startedAt) / 1000).toFixed(1)} s (${v.accel.accel})`;
    const mods = await v.serial.waitFor((e) => e.type === 'modules', 1_000);
    expect(mods.fields.failed).toBe('');
    expect(mods.fields.loaded?.split(',')).toEqual(
      expect.arrayContaining(['virtio_ring', 'virtio', 'virtio_pci', 'virtio_balloon']),
    );
    expect(ready.fields.kernel).toMatch(/^6\.1\.0-\d+-amd64$/);
    expect(ready.fields.balloon).toMatch(/^virtio\d+$/);

    const b = balloonState(await v.serial.waitFor((e) => e.type === 'balloon', 30_000, ready.seq));
    expect(b?.dev).toBe(ready.fields.balloon);
    expect(b?.driver).toBe('virtio_balloon');
    // ACKNOWLEDGE | DRIVER | DRIVER_OK | FEATURES_OK, nothing failed
    expect(b?.status).toBe(0x0f);
    // STATS_VQ, DEFLATE_ON_OOM as configured, and VIRTIO_F_VERSION_1 ...
    expect(b?.features).toEqual(expect.arrayContaining([1, 2, 32]));
    // ... and neither FREE_PAGE_HINT nor PAGE_REPORTING, which were not asked for
    expect(b?.features).not.toContain(3);
    expect(b?.features).not.toContain(5);
    expect(netBalloonPages(await v.serial.waitFor((e) => e.type === 'balloon', 1_000, ready.seq))).toBe(0);
  }, 180_000);

  it('reports meminfo that fits the RAM size, and runs the scenario', async () => {
    const v = vm as Vm;
    const done = await v.serial.waitFor((e) => isScenario(e, 'done', 'hold:64'), 60_000);
    const m = memInfo(await v.serial.waitFor((e) => e.type === 'meminfo', 10_000, done.seq));
    expect(m).toBeDefined();
    if (!m) return;
    // MemTotal is RAM minus what the kernel reserves for itself: 85-100 % of it.
    expect(m.MemTotal).toBeLessThanOrEqual(MEM_MIB * 1024);
    expect(m.MemTotal).toBeGreaterThan(MEM_MIB * 1024 * 0.85);
    expect(m.MemFree).toBeLessThan(m.MemTotal);
    expect(m.MemAvailable).toBeLessThan(m.MemTotal);
    // hold:64 keeps 64 MiB of anonymous memory
    expect(m.AnonPages).toBeGreaterThanOrEqual(64 * 1024);
  }, 120_000);

  it('takes commands on the console: alloc grows AnonPages, free releases it', async () => {
    const v = vm as Vm;
    const held = await v.memInfoAfter(await v.command('alloc 128'));
    const freed = await v.memInfoAfter(await v.command('free'));
    // both allocations (scenario + command) were held, and both were freed
    expect(held.AnonPages).toBeGreaterThanOrEqual((64 + 128) * 1024);
    expect(freed.AnonPages).toBeLessThan(16 * 1024);
    // MemFree is noisier (other kernel users): half of the 192 MiB is enough.
    expect(freed.MemFree - held.MemFree).toBeGreaterThan(96 * 1024);
  }, 120_000);

  it('QMP balloon inflates the stock device: guest free memory and host RssShmem drop, then deflate', async () => {
    const v = vm as Vm;
    // Touch most guest RAM first so the host has it resident, then give it back
    // to the guest's free lists: the balloon then takes pages the host holds.
    await v.command('alloc 800', 120_000);
    const before = await v.memInfoAfter(await v.command('free'));
    const shmemBefore = await v.rssShmemKiB();

    let t = performance.now();
    await v.qmp.balloon((MEM_MIB - BALLOON_MIB) * MiB);
    await v.waitBalloonActual((MEM_MIB - BALLOON_MIB) * MiB, 120_000);
    timing.inflate512 = `${((performance.now() - t) / 1000).toFixed(2)} s`;
    const shmemAfter = await v.rssShmemKiB();
    let since = v.serial.cursor();
    // The guest's own count (vmstat balloon_inflate - balloon_deflate) is exact.
    await v.serial.waitFor((e) => netBalloonPages(e) === BALLOON_MIB * PAGES_PER_MIB, 30_000, since);
    const after = await v.memInfoAfter(await v.command('ping'));
    timing.rssShmem = `${Math.round(shmemBefore / 1024)} -> ${Math.round(shmemAfter / 1024)} MiB`;

    // deflate-on-oom is negotiated, so the driver leaves MemTotal alone and
    // the balloon shows as memory no longer free.
    expect(after.MemTotal).toBe(before.MemTotal);
    expect(before.MemFree - after.MemFree).toBeGreaterThan(BALLOON_MIB * 1024 * 0.8);
    expect(shmemBefore - shmemAfter).toBeGreaterThan(BALLOON_MIB * 1024 * 0.8);

    t = performance.now();
    await v.qmp.balloon(MEM_MIB * MiB);
    expect(await v.waitBalloonActual(MEM_MIB * MiB, 120_000)).toBe(MEM_MIB * MiB);
    timing.deflate512 = `${((performance.now() - t) / 1000).toFixed(2)} s`;
    since = v.serial.cursor();
    await v.serial.waitFor((e) => netBalloonPages(e) === 0, 30_000, since);
    const back = await v.memInfoAfter(await v.command('ping'));
    expect(back.MemFree - after.MemFree).toBeGreaterThan(BALLOON_MIB * 1024 * 0.8);
  }, 300_000);

  it('quits through QMP', async () => {
    const v = vm as Vm;
    const t = performance.now();
    await v.qmp.quit();
    const exit = await v.exited;
    timing.quit = `${Math.round(performance.now() - t)} ms`;
    expect(exit).toEqual({ code: 0, signal: null });
    expect(v.running).toBe(false);
  });
});
