// Issue 16 (c) end to end: two real QEMU guests under one host daemon in one
// real memcg. Guest "cache" reads its raw data disk (host cache=none, so the
// cache is guest RAM) and holds it open; the memcg's limit is then set just
// above its usage and guest "grow" allocates. The host policy must take the
// memory from the cache guest's page cache and leave the growing guest whole.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { DaemonStatus } from '../../src/control/status.js';
import { memoryCgroupRoot } from '../../src/host/cgroups.js';
import { Memcg } from '../../lab/host/memcg.js';
import { ensureSwap, type TempSwap } from '../../lab/host/swap.js';
import { cacheRead, createSwapDisk, dataDiskName, startVm, type Vm } from '../../lab/vm/index.js';
import { guestReport, type GuestReport, hostSwap, memcgOomKills, memcgSwapMiB, usageMiB } from '../../bench/policy/rig.js';
import { DaemonProcess } from '../sim/daemon.js';
import { SKIP, skipUnlessAll } from '../skip.js';
import { buildArtefacts, MiB } from './rig.js';

const STEP_MIB = 32;
// Small sizes for CI. The cache guest's disk is most of its RAM, so its
// spare is mostly cache (its free memory was never touched: ballooning it
// gives the host nothing).
const SIZE = { cacheRamMiB: 512, diskMiB: 384, growRamMiB: 512, growMiB: 160, slackMiB: 128 } as const;
const NAMES = ['cache', 'grow'] as const;
type Name = (typeof NAMES)[number];

interface Figures {
  cacheAfterReadMiB: number;
  before: Record<Name, GuestReport>;
  after: Record<Name, GuestReport>;
  balloonPeakMiB: Record<Name, number>;
  balloonEndMiB: Record<Name, number>;
  limitMiB: number;
  usagePeakMiB: number;
  memcgSwapPeakMiB: number;
  memcgOomKills: number;
  pswpout: number;
  growFailed: number;
  seconds: number;
}

skipUnlessAll([process.getuid?.() === 0, SKIP.notRoot], [memoryCgroupRoot() !== null, SKIP.noMemoryLimit]).describe('page cache: two real guests in one memcg, one holding cache, one growing', () => {
  let f: Figures;
  const dir = mkdtempSync(join(tmpdir(), 'vub-pc-'));
  let swap: TempSwap | undefined;
  let memcg: Memcg | undefined;
  let daemon: DaemonProcess | undefined;
  const vms: Partial<Record<Name, Vm>> = {};
  let sampling = false;

  beforeAll(async () => {
    const t0 = performance.now();
    const { qemu, img } = await buildArtefacts();
    // Our own swap even if the host has some: without swap a squeezed memcg OOM-kills QEMU instead of swapping.
    swap = ensureSwap(join('/var/tmp', `vub-pc-${process.pid}.swap`), 1024, { always: true });
    memcg = Memcg.createAny(`vub-pc-${process.pid}`, 16384 * MiB);
    const m = memcg;
    daemon = await DaemonProcess.startHost();
    const [, source, , path] = m.pressureArgs();
    const sockets: Record<Name, string> = { cache: '', grow: '' };
    for (const n of NAMES) {
      sockets[n] = await daemon.addVm(n, { pressure: source, memcg: path, 'stats-interval': 1, 'page-reporting': false });
    }
    const boot = async (n: Name, memMiB: number, dataDisks: string[]): Promise<Vm> => {
      const vm = await startVm({
        qemu, kernel: img.kernel, initrd: img.initrd, memMiB, dataDisks,
        balloon: { kind: 'vhost-user', socketPath: sockets[n], reconnectSeconds: 1 }, guest: { scenario: 'idle', reportSeconds: 1 },
      });
      vms[n] = vm;
      m.addProcess(vm.pid);
      return vm;
    };
    const cache = await boot('cache', SIZE.cacheRamMiB, [createSwapDisk(join(dir, 'cache.data'), SIZE.diskMiB)]);
    const grow = await boot('grow', SIZE.growRamMiB, []);
    await Promise.all([cache.ready(120_000), grow.ready(120_000)]);

    // The cache guest reads its disk and keeps it open (fd 4).
    const since = cache.serial.cursor();
    await cache.command(`cache ${dataDiskName(0, false)}`, 120_000);
    const read = cacheRead(await cache.serial.waitFor((e) => cacheRead(e) !== undefined, 5000, since));
    if (!read) throw new Error('no VUB cache line');
    const status = (n: Name) => daemon!.request<DaemonStatus>({ op: 'status', vm: n });
    const deadline = performance.now() + 20_000;
    while (!(await Promise.all(NAMES.map(status))).every((s) => s.stats !== null)) {
      if (performance.now() > deadline) throw new Error('no stats from both guests within 20 s');
      await sleep(250);
    }
    await sleep(1500); // a stats sample after the read
    const before = { cache: await guestReport(cache), grow: await guestReport(grow) };
    if (!before.cache || !before.grow) throw new Error('no guest report before the squeeze');

    // Squeeze: the limit just above the usage, then the neighbour guest grows.
    m.write(m.version === 1 ? 'memory.limit_in_bytes' : 'memory.max', String(Math.ceil((usageMiB(m) + SIZE.slackMiB) * MiB)));
    const limitMiB = m.limitBytes() / MiB;
    const h0 = hostSwap();
    const oom0 = memcgOomKills(m);
    const peak: Record<Name, number> = { cache: 0, grow: 0 };
    const last: Record<Name, number> = { cache: 0, grow: 0 };
    let usagePeakMiB = 0;
    let swapPeakMiB = memcgSwapMiB(m);
    sampling = true;
    const sampler = (async () => {
      while (sampling) {
        usagePeakMiB = Math.max(usagePeakMiB, usageMiB(m));
        swapPeakMiB = Math.max(swapPeakMiB, memcgSwapMiB(m));
        for (const n of NAMES) {
          const actual = await vms[n]!.qmp.queryBalloon().catch(() => undefined);
          if (actual === undefined) continue;
          last[n] = (n === 'cache' ? SIZE.cacheRamMiB : SIZE.growRamMiB) - actual / MiB;
          peak[n] = Math.max(peak[n], last[n]);
        }
        await sleep(250);
      }
    })();
    let growFailed = 0;
    for (let done = 0; done < SIZE.growMiB; done += STEP_MIB) {
      await grow.command(`alloc ${STEP_MIB}`, 60_000).catch(() => { growFailed++; });
      await sleep(250);
    }
    await sleep(8000); // the policy settles; the growing guest holds what it allocated
    sampling = false;
    await sampler;
    const r = (x: number | null | undefined) => (x === null || x === undefined ? '?' : x.toFixed(0));
    const after = { cache: await guestReport(cache), grow: await guestReport(grow) };
    const moves = (await Promise.all(NAMES.map(async (n) => (await status(n)).decisions
      .filter((d) => d.newTargetBytes !== d.oldTargetBytes).map((d) => ({ n, d })))))
      .flat().sort((a, b) => a.d.time.localeCompare(b.d.time))
      .map(({ n, d }) => `  ${d.time.slice(11, 23)} ${n}: ${d.rule} ${r(d.oldTargetBytes / MiB)} -> ${r(d.newTargetBytes / MiB)} MiB (${d.event})`);
    if (!after.cache || !after.grow) throw new Error('no guest report after the squeeze');
    f = {
      cacheAfterReadMiB: read.afterKiB / 1024, before: before as Record<Name, GuestReport>, after: after as Record<Name, GuestReport>,
      balloonPeakMiB: peak, balloonEndMiB: last, limitMiB, usagePeakMiB, memcgSwapPeakMiB: Math.max(swapPeakMiB, memcgSwapMiB(m)),
      memcgOomKills: memcgOomKills(m) - oom0, pswpout: hostSwap().pswpout - h0.pswpout, growFailed, seconds: (performance.now() - t0) / 1000,
    };
    console.log([
      `page cache e2e (${f.seconds.toFixed(0)} s): memcg limit ${r(limitMiB)} MiB, usage peak ${r(usagePeakMiB)} MiB;`
        + ` memcg swap peak ${r(f.memcgSwapPeakMiB)} MiB, machine pswpout +${f.pswpout} pages; memcg OOM kills ${f.memcgOomKills}`,
      ...NAMES.map((n) => `  ${n}: balloon peak ${r(peak[n])} end ${r(last[n])} MiB; Buffers+Cached ${r(f.before[n].cacheMiB)} -> ${r(f.after[n].cacheMiB)} MiB;`
        + ` MemAvailable ${r(f.before[n].availMiB)} -> ${r(f.after[n].availMiB)} MiB; guest OOM kills ${r(f.after[n].oomKills)}`),
      `  cache guest after its read: Buffers+Cached ${r(f.cacheAfterReadMiB)} MiB; grow allocations failed: ${growFailed}`,
      ...moves,
    ].join('\n'));
  }, 5 * 60_000);

  afterAll(async () => {
    sampling = false;
    await Promise.all(Object.values(vms).map((vm) => vm.shutdown(3000).catch(() => undefined)));
    await daemon?.stop();
    await memcg?.remove().catch(() => undefined);
    swap?.remove();
    rmSync(dir, { recursive: true, force: true });
  });

  it('the balloon takes the memory from the guest holding page cache: its balloon grows and its cache shrinks', () => {
    expect(f.cacheAfterReadMiB).toBeGreaterThan(SIZE.diskMiB * 0.9); // the read filled the cache
    expect(f.before.cache.cacheMiB!).toBeGreaterThan(SIZE.diskMiB * 0.9); // and it was still held
    // The cache guest gave at least what the neighbour grew by.
    expect(f.balloonEndMiB.cache).toBeGreaterThanOrEqual(SIZE.growMiB);
    // What the host got back came out of its page cache.
    expect(f.before.cache.cacheMiB! - f.after.cache.cacheMiB!).toBeGreaterThanOrEqual(SIZE.growMiB - STEP_MIB);
  });

  it('the growing guest is kept whole: its balloon stays at most one step, it got all it allocated, nobody was OOM-killed', () => {
    expect(f.balloonPeakMiB.grow).toBeLessThanOrEqual(STEP_MIB);
    expect(f.growFailed).toBe(0);
    expect(f.after.grow.oomKills).toBe(f.before.grow.oomKills);
    expect(f.after.cache.oomKills).toBe(f.before.cache.oomKills);
    expect(f.memcgOomKills).toBe(0);
  });

  it('the memcg stays below its limit: no host swap', () => {
    expect(f.memcgSwapPeakMiB).toBeLessThan(STEP_MIB);
  });
});
