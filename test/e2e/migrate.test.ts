// Live migration between two QEMU processes on this machine over a unix
// socket: a 1 GiB guest with 512 MiB ballooned, our device (one daemon per
// QEMU) and stock virtio-balloon-pci in the same run. Prints migration time,
// downtime and the memfd's allocated size on both sides. Under TCG this
// needs qemu/patches/0002 (QEMU 7.2 lost guest writes during live
// migration: the destination's guests crashed, stock ones too).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { type BalloonChoice, memfdAllocatedBytes, type QmpEvent, startVm, type Vm } from '../../lab/vm/index.js';
import { DaemonProcess } from '../sim/daemon.js';
import { SKIP, skipUnless } from '../skip.js';
import { buildArtefacts, MiB } from './rig.js';

const MEM = 1024;
const BALLOON = 512;
const figures: Record<string, unknown> = {};

interface MigrateInfo {
  status: string;
  'total-time'?: number;
  downtime?: number;
  'error-desc'?: string;
  ram?: { transferred: number; duplicate: number; normal: number };
}

const mibOf = (bytes: number): number => Math.round(bytes / MiB);

skipUnless(process.getuid?.() === 0, SKIP.notRoot).describe('live migration over a unix socket, 1 GiB guest, 512 MiB ballooned', () => {
  let dir: string;
  const vms: Vm[] = [];
  const daemons: DaemonProcess[] = [];

  beforeAll(async () => {
    await buildArtefacts();
    dir = mkdtempSync(join(tmpdir(), 'vub-migrate-'));
  }, 20 * 60_000);

  afterAll(async () => {
    await Promise.all(vms.map((v) => v.shutdown()));
    await Promise.all(daemons.map((d) => d.stop()));
    if (dir) rmSync(dir, { recursive: true, force: true });
    console.log(`migration figures: ${JSON.stringify(figures, null, 1)}`);
  });

  async function boot(balloon: BalloonChoice, incoming?: string): Promise<Vm> {
    const { qemu, img } = await buildArtefacts();
    const vm = await startVm({
      qemu, kernel: img.kernel, initrd: img.initrd, memMiB: MEM, balloon,
      guest: { scenario: 'idle', reportSeconds: 1 }, extraArgs: incoming ? ['-incoming', `unix:${incoming}`] : [],
    });
    vms.push(vm);
    return vm;
  }

  /** One daemon for the source QEMU, one for the destination's. */
  async function daemonPair(args: string[]): Promise<{ srcD: DaemonProcess; dstD: DaemonProcess }> {
    const srcD = await DaemonProcess.start(args);
    daemons.push(srcD);
    const dstD = await DaemonProcess.start(args);
    daemons.push(dstD);
    return { srcD, dstD };
  }

  /** migrate to `uri` and wait for the end; the source's query-migrate at the end. */
  async function migrate(src: Vm, sock: string): Promise<MigrateInfo> {
    // The default limit (32 MiB/s) would make the figures a bandwidth test.
    await src.qmp.execute('migrate-set-parameters', { 'max-bandwidth': 4 * 1024 * MiB });
    await src.qmp.execute('migrate', { uri: `unix:${sock}` });
    const end = Date.now() + 300_000;
    for (;;) {
      const info = await src.qmp.execute<MigrateInfo>('query-migrate');
      if (info.status === 'completed' || info.status === 'failed' || info.status === 'cancelled') return info;
      if (Date.now() > end) throw new Error(`migration still ${info.status} after 300 s`);
      await sleep(100);
    }
  }

  async function waitRunning(vm: Vm): Promise<void> {
    const end = Date.now() + 60_000;
    while ((await vm.qmp.execute<{ status: string }>('query-status')).status !== 'running') {
      if (Date.now() > end) throw new Error('destination not running 60 s after migration');
      await sleep(100);
    }
  }

  /**
   * The destination's daemon took the source's page set (device state
   * transfer) and freed those pages without the guest naming them again
   * (renaming.ts is for sources that cannot send it).
   */
  async function expectFreedOnArrival(dstD: DaemonProcess, dst: Vm, f: Record<string, unknown>, t0: number): Promise<void> {
    const arrived = await dstD.waitForLog((l) => l.msg === 'incoming migration: the source\'s page set and hold arrived', 10_000);
    expect(arrived.pages, 'pages named by the source').toBe((BALLOON * MiB) / 4096);
    const end = Date.now() + 30_000;
    let freed = await memfdAllocatedBytes(dst.pid);
    while (freed > 1.1 * (MEM - BALLOON) * MiB && Date.now() < end) {
      await sleep(50);
      freed = await memfdAllocatedBytes(dst.pid);
    }
    Object.assign(f, { freedAfterRunningMs: Date.now() - t0, destinationMemfdAfterFreeMiB: mibOf(freed) });
    expect(freed, 'destination memfd within 10 % of guest RAM minus the balloon, within 30 s').toBeLessThanOrEqual(1.1 * (MEM - BALLOON) * MiB);
    expect(dstD.logs.filter((l) => l.msg === 'incoming migration: the guest names its balloon again so its pages can be freed'), 'no renaming dip').toEqual([]);
  }

  /** Boot, touch 700 MiB and free it (the host holds it), inflate with `inflate`, migrate; the destination running. */
  async function scenario(name: string, srcBalloon: BalloonChoice, dstBalloon: BalloonChoice, inflate: (src: Vm) => Promise<void>) {
    const src = await boot(srcBalloon);
    await src.ready(180_000);
    await src.command('alloc 700', 120_000);
    await src.command('free', 60_000);
    const sock = join(dir, `${name}.sock`);
    const dst = await boot(dstBalloon, sock);
    await inflate(src);
    await src.waitBalloonActual((MEM - BALLOON) * MiB, 120_000);
    await sleep(1_000); // deferred discards done
    const srcMemfd = await memfdAllocatedBytes(src.pid);
    const atStart = await src.qmp.queryBalloon();
    const info = await migrate(src, sock);
    expect(info.status, info['error-desc']).toBe('completed');
    await waitRunning(dst);
    const dstMemfd = await memfdAllocatedBytes(dst.pid);
    figures[name] = {
      // ours: read while the renaming dip (renaming.ts) may be under way
      firstQueryActualMiB: mibOf(await dst.qmp.queryBalloon()),
      actualAtMigrateMiB: mibOf(atStart),
      totalTimeMs: info['total-time'], downtimeMs: info.downtime,
      transferredMiB: info.ram && mibOf(info.ram.transferred), zeroPages: info.ram?.duplicate, normalPages: info.ram?.normal,
      sourceMemfdMiB: mibOf(srcMemfd), destinationMemfdMiB: mibOf(dstMemfd),
    };
    return { src, dst, dstMemfd, figures: figures[name] as Record<string, unknown> };
  }

  it('our device: the page set and the hold move with the device state, the destination frees the balloon at once, query-balloon shows the same actual, a deflate works', async () => {
    const { srcD, dstD } = await daemonPair(['--no-page-reporting', '--stats-interval', '1']);
    const { src, dst, figures: f } = await scenario('vhost-user-balloon',
      { kind: 'vhost-user', socketPath: srcD.socketPath }, { kind: 'vhost-user', socketPath: dstD.socketPath },
      async () => { await srcD.request({ op: 'set-target', value: `${BALLOON}M`, owner: 'e2e' }); });

    // QEMU's incoming RAM allocated every ballooned page; the source's page set (device state) names them, so they are freed at once.
    const t0 = Date.now();
    const sent = await srcD.waitForLog((l) => l.msg === 'migration: the balloon\'s page set and hold go to the destination');
    Object.assign(f, { deviceStateBytes: sent.bytes, deviceStateRuns: sent.runs });
    await expectFreedOnArrival(dstD, dst, f, t0);
    expect(await dst.qmp.queryBalloon()).toBe((MEM - BALLOON) * MiB);
    expect((await dst.command('ping', 60_000)).fields.rc).toBe('0');
    const s = await dstD.status();
    // The source's hold came with the state: the target stays the operator's.
    expect([s.connected, s.targetBytes, s.actualBytes, s.balloonBytes, s.mode, s.hold?.owner]).toEqual([true, BALLOON * MiB, BALLOON * MiB, BALLOON * MiB, 'manual', 'e2e']);
    await src.shutdown();
    // The stats buffer the source's daemon held went back to the ring: the destination's gets it.
    const end = Date.now() + 30_000;
    while ((await dstD.status()).stats === null) {
      if (Date.now() > end) throw new Error('no guest stats at the destination within 30 s');
      await sleep(200);
    }

    const changes: number[] = [];
    dst.qmp.on('event', (e: QmpEvent) => { if (e.event === 'BALLOON_CHANGE') changes.push((e.data as { actual: number }).actual); });
    await dstD.request({ op: 'set-target', value: '0M', owner: 'e2e' });
    await dst.waitBalloonActual(MEM * MiB, 120_000);
    // Writes of actual by the guest are BALLOON_CHANGE events (QEMU sends at most one a second, the last one late).
    for (let i = 0; i < 30 && changes.at(-1) !== MEM * MiB; i++) await sleep(100);
    expect(changes.at(-1)).toBe(MEM * MiB);
    expect((await dst.command('alloc 800', 120_000)).fields.rc).toBe('0');
    await dst.command('free', 60_000);
  }, 900_000);

  it('our device with free page reporting on: the guest runs on and the balloon is freed again', { timeout: 900_000 }, async () => {
    const { srcD, dstD } = await daemonPair(['--stats-interval', '1']);
    const { src, dst, figures: f } = await scenario('vhost-user-balloon, page reporting',
      { kind: 'vhost-user', socketPath: srcD.socketPath }, { kind: 'vhost-user', socketPath: dstD.socketPath },
      async () => { await srcD.request({ op: 'set-target', value: `${BALLOON}M`, owner: 'e2e' }); });
    expect((await srcD.status()).features).toContain('PAGE_REPORTING');
    await expectFreedOnArrival(dstD, dst, f, Date.now());
    expect(await dst.qmp.queryBalloon()).toBe((MEM - BALLOON) * MiB);
    expect((await dst.command('ping', 60_000)).fields.rc).toBe('0');
    // Freed after arrival: reported to the destination's daemon, which discards it.
    await dst.command('alloc 256', 120_000);
    await dst.command('free', 60_000);
    const end = Date.now() + 30_000;
    while ((await dstD.status()).counters.reportedPages === 0 && Date.now() < end) await sleep(200);
    f.destinationReportedMiB = mibOf((await dstD.status()).counters.reportedPages * 4096);
    expect((await dstD.status()).counters.reportedPages).toBeGreaterThan(0);
    await src.shutdown();
  });

  it('an inflation under way when the migration starts: the destination has the balloon at its target with its pages freed, the guest runs on', async () => {
    const { srcD, dstD } = await daemonPair(['--no-page-reporting', '--stats-interval', '1']);
    const src = await boot({ kind: 'vhost-user', socketPath: srcD.socketPath });
    await src.ready(180_000);
    await src.command('alloc 700', 120_000);
    await src.command('free', 60_000);
    const sock = join(dir, 'inflating.sock');
    const dst = await boot({ kind: 'vhost-user', socketPath: dstD.socketPath }, sock);
    await srcD.request({ op: 'set-target', value: `${BALLOON}M`, owner: 'e2e' });
    // Under way: some of it inflated, not all.
    const end = Date.now() + 60_000;
    let atStart = 0;
    while ((atStart = (await srcD.status()).balloonBytes) < 64 * MiB) {
      if (Date.now() > end) throw new Error('the inflation did not start within 60 s');
      await sleep(20);
    }
    const info = await migrate(src, sock);
    expect(atStart, 'the balloon when the migration started').toBeLessThan(BALLOON * MiB);
    expect(info.status, info['error-desc']).toBe('completed');
    const atMigrate = BALLOON * MiB - (MEM * MiB - await src.qmp.queryBalloon());
    await waitRunning(dst);
    // The target and the hold moved with the device; the guest goes on inflating to it on the destination.
    await dst.waitBalloonActual((MEM - BALLOON) * MiB, 180_000);
    const s = await dstD.status();
    expect([s.connected, s.targetBytes, s.actualBytes, s.mode, s.hold?.owner]).toEqual([true, BALLOON * MiB, BALLOON * MiB, 'manual', 'e2e']);
    expect((await dst.command('ping', 60_000)).fields.rc).toBe('0');
    await sleep(2_000); // the renaming dip, if any, and the last discards
    await dst.waitBalloonActual((MEM - BALLOON) * MiB, 120_000);
    const dstMemfd = await memfdAllocatedBytes(dst.pid);
    figures['inflating at migrate'] = { balloonAtStartMiB: mibOf(atStart), balloonLeftToInflateAtEndMiB: mibOf(atMigrate), destinationMemfdMiB: mibOf(dstMemfd),
      totalTimeMs: info['total-time'], downtimeMs: info.downtime };
    expect(dstMemfd, 'destination memfd within 10 % of guest RAM minus the balloon').toBeLessThanOrEqual(1.1 * (MEM - BALLOON) * MiB);
    // The guest uses its memory on: a deflate and an allocation of most of it.
    await dstD.request({ op: 'set-target', value: '0M', owner: 'e2e' });
    await dst.waitBalloonActual(MEM * MiB, 120_000);
    expect((await dst.command('alloc 800', 120_000)).fields.rc).toBe('0');
    await dst.command('free', 60_000);
    await src.shutdown();
  }, 900_000);

  it('no daemon on the destination: the incoming QEMU does not start, and says why', async () => {
    const missing = join(dir, 'no-daemon.sock');
    const err = await boot({ kind: 'vhost-user', socketPath: missing }, join(dir, 'never.sock')).then(() => null, (e: Error & { detail?: string }) => `${e.message}\n${e.detail ?? ''}`);
    expect(err).toMatch(new RegExp(`Failed to connect to '${missing}': No such file or directory`));
  }, 120_000);

  it('the source daemon killed during the migration: the migration fails cleanly (its state cannot move) and the source runs on', async () => {
    const { srcD, dstD } = await daemonPair(['--no-page-reporting', '--stats-interval', '1']);
    const src = await boot({ kind: 'vhost-user', socketPath: srcD.socketPath });
    await src.ready(180_000);
    await srcD.request({ op: 'set-target', value: `${BALLOON}M`, owner: 'e2e' });
    await src.waitBalloonActual((MEM - BALLOON) * MiB, 120_000);
    const sock = join(dir, 'killed.sock');
    const dst = await boot({ kind: 'vhost-user', socketPath: dstD.socketPath }, sock);
    await src.qmp.execute('migrate-set-parameters', { 'max-bandwidth': 16 * MiB }); // a few seconds: the kill lands mid-way
    await src.qmp.execute('migrate', { uri: `unix:${sock}` });
    for (let i = 0; i < 100 && (await src.qmp.execute<MigrateInfo>('query-migrate')).status === 'setup'; i++) await sleep(100);
    await sleep(300);
    expect((await src.qmp.execute<MigrateInfo>('query-migrate')).status).toBe('active');
    await srcD.stop('SIGKILL', true);
    await src.qmp.execute('migrate-set-parameters', { 'max-bandwidth': 4 * 1024 * MiB });
    let info: MigrateInfo = { status: '' };
    for (let i = 0; i < 1200 && !['completed', 'failed', 'cancelled'].includes(info.status); i++) {
      await sleep(100);
      info = await src.qmp.execute<MigrateInfo>('query-migrate');
    }
    expect(info.status, 'without the source daemon its state cannot move').toBe('failed');
    await waitRunning(src);
    expect((await src.command('ping', 60_000)).fields.rc, 'the source guest runs on').toBe('0');
    expect(await src.qmp.queryBalloon(), 'its balloon as it was').toBe((MEM - BALLOON) * MiB);
    // The incoming QEMU gave up: its load failed.
    const gone = await Promise.race([dst.exited.then(() => 'exited'), sleep(30_000).then(() => 'still running')]);
    expect(gone, 'the destination QEMU quits after the failed load').toBe('exited');
    expect(dstD.logs.some((l) => l.msg === 'incoming migration: the source\'s page set and hold arrived')).toBe(false);
  }, 900_000);

  it('stock virtio-balloon-pci in the same run', async () => {
    const { src, dst } = await scenario('virtio-balloon-pci', { kind: 'stock' }, { kind: 'stock' },
      (vm) => vm.qmp.balloon((MEM - BALLOON) * MiB));
    expect(await dst.qmp.queryBalloon()).toBe((MEM - BALLOON) * MiB);
    expect((await dst.command('ping', 60_000)).fields.rc).toBe('0');
    await src.shutdown();
  }, 900_000);
});
