// Real QEMU (patched) + our daemon + Debian's 6.1 guest kernel: the guest's
// own virtio_balloon driver drives every queue of our device.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { balloonState, startVm, VmError } from '../../lab/vm/index.js';
import { buildArtefacts, guestBalloonPages, MiB, PAGES_PER_MIB, Rig } from './rig.js';

const BALLOON_MIB = 512;
const timings: Record<string, string> = {};
const secs = (t: number): string => `${((performance.now() - t) / 1000).toFixed(2)} s`;

describe('vhost-user-balloon with a real guest (no page reporting)', () => {
  let rig: Rig;

  beforeAll(async () => {
    // Page reporting off: host memory may only drop through the balloon here.
    rig = await Rig.start({ daemonArgs: ['--no-page-reporting', '--stats-interval', '1'] });
  }, 20 * 60_000); // a cold qemu/build.sh takes minutes

  afterAll(async () => {
    await rig?.stop();
    console.log(`vhost-user-balloon e2e timings: ${JSON.stringify(timings)}`);
  });

  it('the guest driver binds to our device and negotiates the features we offer', async () => {
    const ready = await rig.vm.ready(120_000);
    expect(ready.fields.balloon).toMatch(/^virtio\d+$/);
    const b = balloonState(await rig.vm.serial.waitFor((e) => e.type === 'balloon', 30_000, ready.seq));
    expect(b?.driver).toBe('virtio_balloon');
    expect(b?.status).toBe(0x0f); // ACKNOWLEDGE | DRIVER | DRIVER_OK | FEATURES_OK
    // MUST_TELL_HOST, STATS_VQ, DEFLATE_ON_OOM, VERSION_1 offered and taken;
    // PAGE_REPORTING not offered; bit 23 (message queue) unknown to the stock driver.
    expect(b?.features).toEqual(expect.arrayContaining([0, 1, 2, 32]));
    expect(b?.features).not.toContain(5);
    expect(b?.features).not.toContain(23);
    const s = await rig.waitStatus((x) => x.connected, 10_000, 'connection');
    expect(s.features).toEqual(expect.arrayContaining(['MUST_TELL_HOST', 'STATS_VQ', 'DEFLATE_ON_OOM', 'VERSION_1']));
    expect(s.features).not.toContain('PAGE_REPORTING');
  }, 180_000);

  it('stats arrive with the guest\'s real values', async () => {
    const since = rig.vm.serial.cursor();
    const s = await rig.waitStatus((x) => x.stats !== null && (x.stats.values.total_memory ?? 0) > 0, 30_000, 'stats');
    const m = await rig.vm.serial.waitFor((e) => e.type === 'meminfo', 10_000, since);
    // The guest's MemTotal (kB) is what its driver reports as total_memory.
    expect(s.stats?.values.total_memory).toBe(Number(m.fields.MemTotal) * 1024);
    expect(s.stats?.values.available_memory).toBeGreaterThan(0);
    expect(s.stats?.values.available_memory).toBeLessThanOrEqual(s.stats?.values.total_memory ?? 0);
  }, 60_000);

  it('a 512 MiB target: actual reaches it and host memory backing the guest drops by >= 90% of it', async () => {
    await rig.touchAndFree(800);
    const before = await rig.vm.rssShmemKiB();
    const t = performance.now();
    await rig.setTarget(`${BALLOON_MIB}M`);
    await rig.vm.waitBalloonActual((rig.memMiB - BALLOON_MIB) * MiB, 120_000);
    timings.ourInflate512 = secs(t);
    await rig.waitGuestBalloon(BALLOON_MIB * PAGES_PER_MIB, 30_000);
    // Deferred discard finishes within 50 ms of the last inflate; wait for the count.
    const s = await rig.waitStatus((x) => x.counters.discardedBytes >= BALLOON_MIB * MiB, 10_000, 'discard');
    const after = await rig.vm.rssShmemKiB();
    timings.ourRssShmem = `${Math.round(before / 1024)} -> ${Math.round(after / 1024)} MiB`;
    expect(s.actualBytes).toBe(BALLOON_MIB * MiB);
    expect(s.balloonBytes).toBe(BALLOON_MIB * MiB);
    expect((before - after) * 1024).toBeGreaterThanOrEqual(0.9 * BALLOON_MIB * MiB);
  }, 300_000);

  it('target back to 0: actual returns to 0 and the guest can allocate that memory again', async () => {
    const t = performance.now();
    await rig.setTarget('0M');
    await rig.vm.waitBalloonActual(rig.memMiB * MiB, 120_000);
    timings.ourDeflate512 = secs(t);
    await rig.waitGuestBalloon(0, 30_000);
    expect((await rig.status()).actualBytes).toBe(0);
    // 800 MiB of a 1 GiB guest only fits with the balloon gone.
    const ack = await rig.vm.command('alloc 800', 120_000);
    expect(ack.fields.rc).toBe('0');
    await rig.vm.command('free');
  }, 300_000);

  it('a VM pause during inflation: nothing is discarded while stopped, all of it after cont', async () => {
    await rig.touchAndFree(800);
    const before = await rig.vm.rssShmemKiB();
    await rig.setTarget(`${BALLOON_MIB}M`);
    await rig.waitStatus((x) => x.balloonBytes >= 96 * MiB, 30_000, 'inflation under way');
    await rig.vm.qmp.execute('stop'); // vhost_dev_stop(): GET_VRING_BASE on every queue
    await new Promise((r) => setTimeout(r, 300));
    const paused = await rig.status();
    const rss1 = await rig.vm.rssShmemKiB();
    await new Promise((r) => setTimeout(r, 1500)); // beyond the 1 s hand-over limit
    const rss2 = await rig.vm.rssShmemKiB();
    expect(Math.abs(rss2 - rss1), 'no discard while the VM is stopped').toBeLessThan(1024);
    expect((await rig.status()).balloonBytes).toBe(paused.balloonBytes);
    await rig.vm.qmp.execute('cont');
    await rig.vm.waitBalloonActual((rig.memMiB - BALLOON_MIB) * MiB, 120_000);
    // The same guest resumed: the pages pending at the pause are freed too,
    // and the count went on from where it was.
    const s = await rig.waitStatus((x) => x.balloonBytes === BALLOON_MIB * MiB && x.counters.discardedBytes >= 2 * BALLOON_MIB * MiB, 20_000, 'balloon and discards after cont');
    const after = await rig.vm.rssShmemKiB();
    timings.pauseRssShmem = `${Math.round(before / 1024)} -> paused ${Math.round(rss1 / 1024)} -> ${Math.round(after / 1024)} MiB (balloon ${paused.balloonBytes / MiB} MiB at the pause)`;
    expect(s.actualBytes).toBe(BALLOON_MIB * MiB);
    expect((before - after) * 1024).toBeGreaterThanOrEqual(0.9 * BALLOON_MIB * MiB);
    await rig.setTarget('0M');
    await rig.vm.waitBalloonActual(rig.memMiB * MiB, 120_000);
  }, 300_000);

  it('QMP balloon sets the target through our daemon; query-balloon reports actual', async () => {
    await rig.vm.qmp.balloon((rig.memMiB - 256) * MiB);
    const s = await rig.waitStatus((x) => x.targetBytes === 256 * MiB, 10_000, 'QMP target');
    expect(s.mode).toBe('manual');
    expect(s.hold?.owner).toBe('qemu-monitor');
    expect(await rig.vm.waitBalloonActual((rig.memMiB - 256) * MiB, 120_000)).toBe((rig.memMiB - 256) * MiB);
    await rig.waitStatus((x) => x.actualBytes === 256 * MiB, 10_000, 'actual');
  }, 300_000);

  it('deflate-on-OOM: an allocation beyond what is left makes the guest deflate, and the daemon sees it', async () => {
    await rig.setTarget(`${BALLOON_MIB}M`);
    await rig.vm.waitBalloonActual((rig.memMiB - BALLOON_MIB) * MiB, 120_000);
    const before = await rig.status();
    // ~450 MiB are left; 600 MiB only fit if the driver gives balloon pages back.
    const ack = await rig.vm.command('alloc 600', 240_000);
    expect(ack.fields.rc).toBe('0');
    const s = await rig.waitStatus((x) => x.counters.guestPressure['deflate-on-oom'] > 0, 30_000, 'deflate-on-OOM');
    expect(s.counters.deflatedPages).toBeGreaterThan(before.counters.deflatedPages);
    expect(s.balloonBytes).toBeLessThan(BALLOON_MIB * MiB);
    await rig.vm.command('free');
  }, 300_000);
});

describe('vhost-user-balloon-pci with free page reporting and a daemon restart', () => {
  let rig: Rig;

  beforeAll(async () => {
    rig = await Rig.start({ pci: true, reconnectSeconds: 1 });
    await rig.vm.ready(120_000);
    await rig.waitStatus((x) => x.connected, 10_000, 'connection');
  }, 20 * 60_000);

  afterAll(async () => {
    await rig?.stop();
  });

  it('free page reporting: after the guest frees a large allocation, host memory drops without inflation', async () => {
    await rig.vm.command('alloc 600', 120_000);
    const held = await rig.vm.rssShmemKiB();
    const reportedBefore = (await rig.status()).counters.reportedPages;
    await rig.vm.command('free');
    // Linux reports free pageblocks 2 s after they gather; allow a few rounds.
    const s = await rig.waitStatus((x) => x.counters.reportedPages - reportedBefore >= 400 * PAGES_PER_MIB, 60_000, 'reports');
    const after = await rig.vm.rssShmemKiB();
    timings.reportingRssShmem = `${Math.round(held / 1024)} -> ${Math.round(after / 1024)} MiB`;
    expect(s.features).toContain('PAGE_REPORTING');
    expect(s.targetBytes).toBe(0);
    expect(s.balloonBytes).toBe(0);
    expect((held - after) / 1024).toBeGreaterThanOrEqual(400);
  }, 180_000);

  it('a guest reset empties the balloon; the rebooted driver inflates to the kept target again', async () => {
    await rig.setTarget('128M');
    await rig.vm.waitBalloonActual((rig.memMiB - 128) * MiB, 120_000);
    await rig.waitStatus((x) => x.balloonBytes === 128 * MiB, 10_000, 'balloon 128 MiB');
    const since = rig.vm.serial.cursor();
    await rig.vm.qmp.execute('set-action', { reboot: 'reset' }); // the rig runs QEMU with -no-reboot
    await rig.vm.qmp.execute('system_reset');
    await rig.vm.serial.waitFor((e) => e.type === 'ready', 120_000, since);
    // The new driver starts from an empty balloon and fills it to num_pages again;
    // the daemon counts from 0, not from the 128 MiB the old kernel had.
    await rig.waitGuestBalloon(128 * PAGES_PER_MIB, 60_000);
    const s = await rig.waitStatus((x) => x.actualBytes === 128 * MiB && x.balloonBytes === 128 * MiB, 30_000, 'refilled balloon');
    expect(s.targetBytes).toBe(128 * MiB);
    await rig.setTarget('0M');
    await rig.vm.waitBalloonActual(rig.memMiB * MiB, 120_000);
    expect((await rig.waitStatus((x) => x.balloonBytes === 0, 10_000, 'empty balloon')).actualBytes).toBe(0);
  }, 300_000);

  it('a killed daemon is replaced: QEMU reconnects, the guest runs on, the balloon size is recovered from actual', async () => {
    await rig.setTarget('256M');
    await rig.vm.waitBalloonActual((rig.memMiB - 256) * MiB, 120_000);
    await rig.restartDaemon('SIGKILL');
    // The guest keeps running while no backend is there and after.
    expect((await rig.vm.command('ping', 30_000)).fields.rc).toBe('0');
    const s = await rig.waitStatus((x) => x.connected && x.actualBytes === 256 * MiB, 30_000, 'reconnect + recovered actual');
    expect(s.balloonBytes).toBe(256 * MiB);
    // The new daemon keeps the balloon where it was instead of deflating it.
    expect(s.targetBytes).toBe(256 * MiB);
    const later = await rig.vm.serial.waitFor((e) => e.type === 'balloon', 10_000, rig.vm.serial.cursor());
    expect(guestBalloonPages(later)).toBe(256 * PAGES_PER_MIB);
    // And it still drives the device.
    await rig.setTarget('0M');
    await rig.vm.waitBalloonActual(rig.memMiB * MiB, 120_000);
    await rig.waitGuestBalloon(0, 30_000);
  }, 300_000);
});

describe('faults and the stock device for comparison', () => {
  it('QEMU started without our daemon fails with an error naming the socket', async () => {
    const { qemu, img } = await buildArtefacts();
    const socketPath = join(mkdtempSync(join(tmpdir(), 'vub-')), 'absent.sock');
    const err = await startVm({
      qemu, kernel: img.kernel, initrd: img.initrd, memMiB: 256,
      balloon: { kind: 'vhost-user', socketPath },
    }).then(() => null, (e: unknown) => e as VmError);
    expect(err).toBeInstanceOf(VmError);
    expect(err?.detail ?? '').toContain(`Failed to connect to '${socketPath}'`);
  }, 120_000);

  it('stock virtio-balloon-pci on the same guest: the same inflate and deflate, side by side', async () => {
    const { qemu, img } = await buildArtefacts();
    const vm = await startVm({
      qemu, kernel: img.kernel, initrd: img.initrd, memMiB: 1024,
      balloon: { kind: 'stock', deflateOnOom: true },
      guest: { scenario: 'idle', reportSeconds: 1 },
    });
    try {
      await vm.ready(120_000);
      await vm.command('alloc 800', 120_000);
      await vm.command('free');
      const before = await vm.rssShmemKiB();
      let t = performance.now();
      await vm.qmp.balloon((1024 - BALLOON_MIB) * MiB);
      await vm.waitBalloonActual((1024 - BALLOON_MIB) * MiB, 120_000);
      timings.stockInflate512 = secs(t);
      const after = await vm.rssShmemKiB();
      timings.stockRssShmem = `${Math.round(before / 1024)} -> ${Math.round(after / 1024)} MiB`;
      t = performance.now();
      await vm.qmp.balloon(1024 * MiB);
      await vm.waitBalloonActual(1024 * MiB, 120_000);
      timings.stockDeflate512 = secs(t);
      expect((before - after) * 1024).toBeGreaterThanOrEqual(0.9 * BALLOON_MIB * MiB);
    } finally {
      await vm.shutdown();
    }
    console.log([
      'inflate/deflate 512 MiB of a 1 GiB TCG guest     ours (vhost-user)   stock virtio-balloon-pci',
      `  inflate time                                   ${timings.ourInflate512 ?? '-'}              ${timings.stockInflate512}`,
      `  QEMU RssShmem                                  ${timings.ourRssShmem ?? '-'}   ${timings.stockRssShmem}`,
      `  deflate time                                   ${timings.ourDeflate512 ?? '-'}              ${timings.stockDeflate512}`,
    ].join('\n'));
  }, 300_000);
});
