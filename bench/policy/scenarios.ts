// The scenarios of the policy benchmark (issue 16, item 5, b-d). Each run:
// guests (and our daemon) in a fresh memcg, a preparation (idle memory, page
// cache), a squeeze (a neighbour process, or a guest that grows), a hold,
// then the host's and guests' counters.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { type Allocator, startAllocator } from '../../lab/host/allocator.js';
import { Memcg } from '../../lab/host/memcg.js';
import { cacheRead, dataDiskName, type GuestImage } from '../../lab/vm/index.js';
import type { Arm } from './arms.js';
import { coveredAfter, needOf, type RunResult, type Sample, type ScenarioName, type VmResult } from './metrics.js';
import {
  type Guest, guestReport, type GuestReport, type GuestSpec, hostSwap, memcgMajorFaults, memcgOomKills, memcgSwapMiB, Rig, rssShmemMiB, Sampler, usageMiB,
} from './rig.js';

const MiB = 2 ** 20;
const loadAvg = (): number[] => readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).map(Number);

/** Sizes (MiB) and times (s) of each scenario; --size key=value overrides any of them. */
export const SIZES: Record<ScenarioName, Record<string, number>> = {
  // The demo's numbers (lab/demo): a 1 GiB guest touched and freed 700 MiB; a
  // neighbour grows to 700 MiB at 64 MiB/s in a 1400 MiB memcg.
  'idle-neighbour': { guestMiB: 1024, touchMiB: 700, limitMiB: 1400, neighbourMiB: 700, guestSwapMiB: 256, holdS: 30 },
  // Guest "cache" reads its 512 MiB disk and holds the cache; then the limit is
  // set to the usage + slack and guest "grow" allocates 512 MiB in 32 MiB steps.
  'page-cache': { guestMiB: 768, diskMiB: 512, growMiB: 512, growStepMiB: 32, slackMiB: 128, guestSwapMiB: 256, holdS: 30 },
  // Four guests, weights 1, 1, 2, 4, each touched and freed the same memory; the
  // limit goes to usage + slack, then a neighbour grows.
  weights: { guestMiB: 512, touchMiB: 320, neighbourMiB: 512, slackMiB: 64, guestSwapMiB: 128, holdS: 30 },
};
export const DEFAULT_WEIGHTS = [1, 1, 2, 4];

export interface RunContext {
  scenario: ScenarioName;
  arm: Arm;
  run: number;
  size: Record<string, number>;
  /** weights: one guest per weight; --weight is passed only when some weight is not 1. */
  weights: number[];
  qemu: string;
  img: GuestImage;
  log: (s: string) => void;
}

export interface RunOutput { result: RunResult; samples: Sample[] }

const num = (size: Record<string, number>, k: string): number => {
  const v = size[k];
  if (v === undefined) throw new Error(`size ${k} is missing`);
  return v;
};

function specs(c: RunContext): GuestSpec[] {
  const s = c.size;
  const g = (name: string, extra: Partial<GuestSpec> = {}): GuestSpec => ({ name, memMiB: num(s, 'guestMiB'), swapMiB: num(s, 'guestSwapMiB'), ...extra });
  switch (c.scenario) {
    case 'idle-neighbour': return [g('idle')];
    case 'page-cache': return [g('cache', { dataDiskMiB: [num(s, 'diskMiB')] }), g('grow')];
    case 'weights': {
      const flag = c.weights.some((w) => w !== 1);
      return c.weights.map((w, i) => g(`w${w}-${i}`, flag ? { daemonArgs: ['--weight', String(w)] } : {}));
    }
  }
}

/** Shared by the three scenarios: set up, prepare, squeeze, hold, measure, tear down. */
export async function runScenario(c: RunContext, live: { rig?: Rig; neighbour?: Allocator; memcg?: Memcg }): Promise<RunOutput> {
  const s = c.size;
  const load0 = loadAvg();
  const dir = mkdtempSync(join(tmpdir(), 'vub-pb-'));
  const fixedLimit = c.scenario === 'idle-neighbour';
  const memcg = Memcg.createAny(`vub-policy-${process.pid}-${c.arm.name}-${c.run}`, (fixedLimit ? num(s, 'limitMiB') : 16384) * MiB);
  live.memcg = memcg;
  const rig = new Rig(dir, memcg, c.arm, c.qemu, c.img);
  live.rig = rig;
  try {
    const sp = specs(c);
    await rig.startDaemon(sp);
    const guests: Guest[] = [];
    for (const spec of sp) guests.push(await rig.startGuest(spec));
    await Promise.all(guests.map((g) => g.vm.ready(180_000)));
    c.log(`  ${guests.length} guest(s) up`);

    // Preparation.
    const cache = new Map<string, { diskMiB: number; beforeReadMiB: number; afterReadMiB: number }>();
    if (c.scenario === 'page-cache') {
      const g = guests[0] as Guest;
      const since = g.vm.serial.cursor();
      await g.vm.command(`cache ${dataDiskName(0, g.spec.swapMiB > 0)}`, 600_000);
      const e = await g.vm.serial.waitFor((x) => cacheRead(x) !== undefined, 5000, since);
      const r = cacheRead(e);
      if (!r) throw new Error(`no cache line: ${e.raw}`);
      cache.set(g.spec.name, { diskMiB: r.kib / 1024, beforeReadMiB: r.beforeKiB / 1024, afterReadMiB: r.afterKiB / 1024 });
      c.log(`  ${g.spec.name} read /dev/${r.dev} (${(r.kib / 1024).toFixed(0)} MiB) in ${r.seconds.toFixed(1)} s: Buffers+Cached ${(r.beforeKiB / 1024).toFixed(0)} -> ${(r.afterKiB / 1024).toFixed(0)} MiB`);
    } else {
      await Promise.all(guests.map(async (g) => { await g.vm.command(`alloc ${num(s, 'touchMiB')}`, 300_000); await g.vm.command('free'); }));
    }
    await sleep(3000);
    if (!fixedLimit) memcg.write(memcg.version === 1 ? 'memory.limit_in_bytes' : 'memory.max', String(Math.ceil((usageMiB(memcg) + num(s, 'slackMiB')) * MiB)));

    // Before the squeeze.
    const limitMiB = memcg.limitBytes() / MiB;
    const baselineMiB = usageMiB(memcg);
    const g0 = await Promise.all(guests.map((g) => guestReport(g.vm)));
    const rss0 = await Promise.all(guests.map((g) => rssShmemMiB(g.vm)));
    const h0 = hostSwap();
    const oom0 = memcgOomKills(memcg);
    const majflt0 = memcgMajorFaults(memcg);
    const sampler = new Sampler(memcg, guests);
    sampler.start();

    // The squeeze.
    let squeezeMiB: number;
    let squeezeDone = true;
    let allocFailed = 0;
    if (c.scenario === 'page-cache') {
      const g = guests[1] as Guest;
      const step = num(s, 'growStepMiB');
      squeezeMiB = num(s, 'growMiB');
      for (let done = 0; done < squeezeMiB; done += step) {
        await g.vm.command(`alloc ${step}`, 120_000).catch((e: Error) => { if (!allocFailed++) c.log(`  ${g.spec.name}: ${e.message}`); });
        if (!g.vm.running) break;
        await sleep(250);
      }
    } else {
      squeezeMiB = num(s, 'neighbourMiB');
      const n = startAllocator(memcg.path, squeezeMiB, { stepMiB: 16, pauseMs: 250 });
      live.neighbour = n;
      // The deadline's timer is cancelled once the squeeze is done (left running, it kept the harness alive 2.5 min per run).
      const deadline = new AbortController();
      squeezeDone = await Promise.race([n.allocated.then(() => true, () => false),
        sleep((squeezeMiB / 16) * 1000 + 120_000, undefined, { signal: deadline.signal }).then(() => false, () => false)]);
      deadline.abort();
    }
    c.log(`  squeeze of ${squeezeMiB} MiB ${squeezeDone && !allocFailed ? 'done' : 'incomplete'} at ${sampler.now().toFixed(0)} s; holding ${num(s, 'holdS')} s`);
    await sleep(num(s, 'holdS') * 1000);

    // After.
    sampler.stop();
    sampler.swapTick();
    const h1 = hostSwap();
    const g1 = await Promise.all(guests.map((g) => guestReport(g.vm)));
    const rss1 = await Promise.all(guests.map((g) => rssShmemMiB(g.vm)));
    const statuses = await Promise.all(guests.map((g) => rig.daemonStatus(g.spec.name)));
    const history = await rig.history(guests.map((g) => g.spec.name));
    const delta = (a: GuestReport | undefined, b: GuestReport | undefined, k: 'pswpout' | 'oomKills'): number | null => {
      const x = a?.[k], y = b?.[k];
      return x === null || x === undefined || y === null || y === undefined ? null : y - x;
    };
    const vms: VmResult[] = guests.map((g, i) => {
      const ch = cache.get(g.spec.name);
      const st = statuses[i];
      return {
        name: g.spec.name, ramMiB: g.spec.memMiB,
        ...(c.scenario === 'weights' ? { weight: c.weights[i] as number } : {}),
        balloonEndMiB: sampler.last(g.spec.name), balloonPeakMiB: sampler.peak.get(g.spec.name) ?? 0,
        rssBeforeMiB: rss0[i] as number, rssEndMiB: rss1[i] as number,
        availBeforeMiB: g0[i]?.availMiB ?? null,
        guestSwapOut: g.spec.swapMiB > 0 ? delta(g0[i], g1[i], 'pswpout') : null,
        guestOomKills: delta(g0[i], g1[i], 'oomKills'),
        ...(ch ? { cache: { ...ch, heldMiB: g0[i]?.cacheMiB ?? NaN, endMiB: g1[i]?.cacheMiB ?? null } } : {}),
        ...(c.scenario === 'page-cache' && i === 1 ? { allocFailed } : {}),
        ...(st ? { daemonHostEvents: st.pressure.host.events } : {}),
      };
    });
    const needMiB = needOf(baselineMiB, squeezeMiB, limitMiB);
    const result: RunResult = {
      scenario: c.scenario, arm: c.arm.name, run: c.run,
      hostSwapOut: h1.pswpout - h0.pswpout, hostSwapIn: h1.pswpin - h0.pswpin,
      memcgSwapOutMiB: sampler.swapOutMiB, memcgMajorFaults: memcgMajorFaults(memcg) - majflt0,
      memcgSwapPeakMiB: sampler.swapPeakMiB, memcgSwapEndMiB: memcgSwapMiB(memcg),
      hostOomKills: memcgOomKills(memcg) - oom0,
      limitMiB, baselineMiB, squeezeMiB, needMiB,
      firstEventS: sampler.firstEventS,
      coveredAfterS: coveredAfter(sampler.samples, guests.map((g) => g.spec.name), needMiB, sampler.firstEventS),
      coveredFromSqueezeS: coveredAfter(sampler.samples, guests.map((g) => g.spec.name), needMiB, 0),
      squeezeDone: squeezeDone && allocFailed === 0,
      vms,
      loadAvg: { start: load0, end: loadAvg() },
      ...(history ? { history } : {}),
    };
    return { result, samples: sampler.samples };
  } finally {
    await live.neighbour?.kill();
    live.neighbour = undefined;
    await rig.stop();
    live.rig = undefined;
    await memcg.remove().catch(() => undefined);
    live.memcg = undefined;
    rmSync(dir, { recursive: true, force: true });
  }
}
