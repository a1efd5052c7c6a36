// cgroup v1 vmpressure with a real memcg: a 200 MiB allocator in a 64 MiB
// memcg (swap on) makes the kernel reclaim, and its events must reach our
// source through the daemon's epoll loop; fed to the policy they raise the
// target in steps; a removed memcg is retried, not a crash.
import { expect, it } from 'vitest';
import { silentLogger } from '../../src/log.js';
import { DecisionHistory } from '../../src/policy/history.js';
import { SEED_FIXED_PARAMS, SEED_PARAMS } from '../../src/policy/params.js';
import { initialState, step } from '../../src/policy/step.js';
import type { PolicyState } from '../../src/policy/types.js';
import { isPressureError } from '../../src/pressure/errors.js';
import { PressureSupervisor, SupervisorStatus } from '../../src/pressure/supervisor.js';
import type { HostPressureEvent } from '../../src/pressure/types.js';
import { VmpressureSource } from '../../src/pressure/vmpressure.js';
import { EPOLLERR, FdWatcher, ReadyHandler } from '../../src/transport/event-loop.js';
import {
  haveV1Memory, isRoot, makeCgroup, MiB, sleep, startAllocator, useCgroupRig, uniqueName, waitUntil,
} from './pressure-helpers.js';
import { SKIP, skipUnlessAll } from '../skip.js';

interface Seen { t: number; ev: HostPressureEvent }
const total = (seen: Seen[]) => seen.reduce((n, s) => n + s.ev.count, 0);

skipUnlessAll([isRoot, SKIP.notRoot], [haveV1Memory, SKIP.noV1Memory]).describe('cgroup v1 vmpressure on a real memcg', () => {
  const rig = useCgroupRig();
  const { cgroups, allocators, stops } = rig;

  function watch(memcg: string, level: 'low' | 'medium' | 'critical' = 'low', mode?: 'default' | 'hierarchy' | 'local') {
    const seen: Seen[] = [];
    const errors: Error[] = [];
    const src = new VmpressureSource(rig.loop, memcg, level, mode);
    src.start((ev) => seen.push({ t: performance.now(), ev }), (err) => errors.push(err));
    stops.push(() => src.stop());
    return { src, seen, errors };
  }

  it('events from a 200 MiB allocator in a 64 MiB memcg reach the source through the epoll loop', async () => {
    const cg = makeCgroup({ limitBytes: 64 * MiB });
    cgroups.push(cg);
    const { seen, errors } = watch(cg.v1);
    const a = startAllocator([cg.v1], 200, 10_000);
    allocators.push(a);
    const joinedAt = await a.joined;
    await waitUntil(() => seen.length > 0, 15_000, 'the first vmpressure event');
    const first = seen[0]!.t;
    await sleep(5000);
    const window = seen.filter((s) => s.t < first + 5000);
    const figures = {
      firstEventAfterSpawnMs: Math.round(first - a.spawnedAt),
      firstEventAfterJoinMs: Math.round(first - joinedAt),
      eventsPerSecond: Math.round(total(window) / 5),
      readsPerSecond: Math.round(window.length / 5),
      largestCountInOneRead: Math.max(...window.map((s) => s.ev.count)),
    };
    console.log('vmpressure low on a 64 MiB memcg, 200 MiB allocator:', JSON.stringify(figures));
    expect(errors).toEqual([]);
    expect(seen.every((s) => s.ev.source === 'vmpressure' && s.ev.level === 'low' && s.ev.path === cg.v1 && Number.isInteger(s.ev.count) && s.ev.count >= 1)).toBe(true);
    // A storm, not a trickle: expect bursts, as the architecture notes say.
    expect(total(window)).toBeGreaterThan(10);
    // With swap on, the limit means reclaim, not an OOM kill: the allocator is still running.
    expect(a.child.exitCode).toBeNull();
    expect(a.child.signalCode).toBeNull();
  }, 40_000);

  it('fed to the policy, the storm raises the target in 32 MiB steps, at most one per second', async () => {
    const cg = makeCgroup({ limitBytes: 64 * MiB });
    cgroups.push(cg);
    const { seen } = watch(cg.v1);
    const a = startAllocator([cg.v1], 200, 10_000);
    allocators.push(a);
    await waitUntil(() => seen.length > 0, 15_000, 'the first vmpressure event');
    await sleep(4000);
    const events = seen.slice();
    // The controller's wiring: every event through step(); the guest (simulated) follows the target.
    const history = new DecisionHistory(100);
    const pushes: Array<{ t: number; pages: number }> = [];
    let s: PolicyState = step(initialState(SEED_FIXED_PARAMS), { type: 'guest-ram', bytes: 4096 * MiB }, 0).state;
    for (const { t, ev } of events) {
      const r = step(s, { type: 'host-pressure', source: ev.source, level: ev.level, count: ev.count }, t);
      s = r.state;
      for (const action of r.actions) {
        history.push(action.decision);
        if (action.type === 'set-target') {
          pushes.push({ t, pages: action.pages });
          s = step(s, { type: 'balloon-size', pages: action.pages, from: 'queues' }, t).state;
        }
      }
    }
    const span = events.at(-1)!.t - events[0]!.t;
    const stepPages = (32 * MiB) / 4096;
    expect(pushes.length).toBeGreaterThanOrEqual(2);
    expect(pushes.length).toBeLessThanOrEqual(Math.floor(span / SEED_FIXED_PARAMS.rateLimitMs) + 1);
    pushes.forEach((p, i) => expect(p.pages).toBe((i + 1) * stepPages));
    for (let i = 1; i < pushes.length; i++) expect(pushes[i]!.t - pushes[i - 1]!.t).toBeGreaterThanOrEqual(SEED_FIXED_PARAMS.rateLimitMs);
    expect(history.last().filter((e) => e.ignored).every((e) => e.cause === 'rate-limit')).toBe(true);
    // The seed's rule on the same events: one step per kernel event.
    let seed = step(initialState(SEED_PARAMS), { type: 'guest-ram', bytes: 4096 * MiB }, 0).state;
    for (const { t, ev } of events) seed = step(seed, { type: 'host-pressure', source: ev.source, level: ev.level, count: ev.count }, t).state;
    console.log('policy on real events:', JSON.stringify({
      events: total(events), reads: events.length, spanMs: Math.round(span), steps: pushes.length, targetMiB: s.targetPages / 256,
      historyEntries: history.length, seedTargetMiB: seed.targetPages / 256,
    }));
    expect(seed.targetPages).toBeGreaterThan(s.targetPages);
  }, 40_000);

  it('levels nest (low >= medium >= critical); a parent sees a child\'s events in hierarchy mode, not in default mode', async () => {
    const parent = makeCgroup();
    const child = makeCgroup({ limitBytes: 64 * MiB, parent: parent.v1, name: 'vm' });
    cgroups.push(parent);
    const low = watch(child.v1, 'low');
    const medium = watch(child.v1, 'medium');
    const critical = watch(child.v1, 'critical');
    const upHierarchy = watch(parent.v1, 'low', 'hierarchy');
    const upDefault = watch(parent.v1, 'low', 'default');
    const a = startAllocator([child.v1], 200, 5000);
    allocators.push(a);
    await waitUntil(() => low.seen.length > 0, 15_000, 'the first vmpressure event');
    await a.exited;
    await sleep(500); // let the last events drain
    const counts = {
      low: total(low.seen), medium: total(medium.seen), critical: total(critical.seen),
      parentHierarchy: total(upHierarchy.seen), parentDefault: total(upDefault.seen),
    };
    console.log('vmpressure levels and modes:', JSON.stringify(counts));
    expect(counts.low).toBeGreaterThan(0);
    expect(counts.low).toBeGreaterThanOrEqual(counts.medium);
    expect(counts.medium).toBeGreaterThanOrEqual(counts.critical);
    // Every event of the child also reaches a hierarchy-mode listener above it ...
    expect(counts.parentHierarchy).toBe(counts.low);
    // ... while a default-mode one only hears what no listener below took.
    expect(counts.parentDefault).toBe(0);
  }, 40_000);

  it('a removed memcg is not pressure: the supervisor retries with backoff and picks the memcg up again', async () => {
    const name = uniqueName('vanish');
    let cg = makeCgroup({ limitBytes: 64 * MiB, name });
    cgroups.push(cg);
    const seen: Seen[] = [];
    const statuses: SupervisorStatus[] = [];
    const src = new VmpressureSource(rig.loop, cg.v1, 'low');
    const sup = new PressureSupervisor(src, null, (ev) => seen.push({ t: performance.now(), ev }), silentLogger(),
      { minBackoffMs: 100, maxBackoffMs: 400, onStatus: (st) => statuses.push(st) });
    stops.push(() => sup.stop());
    sup.start();
    const a1 = startAllocator([cg.v1], 200, 2000);
    allocators.push(a1);
    await waitUntil(() => seen.length > 0, 15_000, 'events before the removal');
    await a1.kill();
    await sleep(300);
    const before = seen.length;

    await cg.remove();
    await waitUntil(() => sup.state === 'retrying', 3000, 'the supervisor to notice the removal');
    expect(sup.status()).toMatchObject({ failures: 1, lastError: expect.stringMatching(/EBALLOON_PRESSURE_LOST: memcg .* was removed/) });
    await sleep(1200);
    expect(seen.length).toBe(before); // the kernel's removal signal was not reported as pressure
    expect(sup.failedRetries).toBeGreaterThanOrEqual(2);
    expect(sup.lastError).toMatch(/EBALLOON_PRESSURE_NOENT/);
    const delays = statuses.filter((st) => st.state === 'retrying').map((st) => st.retryInMs);
    expect(delays.slice(0, 4)).toEqual([100, 200, 400, 400]);

    cg = makeCgroup({ limitBytes: 64 * MiB, name });
    cgroups.push(cg);
    await waitUntil(() => sup.state === 'running', 2000, 'the supervisor to re-register');
    const a2 = startAllocator([cg.v1], 200, 3000);
    allocators.push(a2);
    await waitUntil(() => seen.length > before, 15_000, 'events from the re-created memcg');
    expect(sup.failures).toBe(1);
  }, 60_000);

  it('an eventfd error ends the source with EBALLOON_PRESSURE_LOST', () => {
    const cg = makeCgroup({ limitBytes: 64 * MiB });
    cgroups.push(cg);
    // A watcher that lets the test fire the handler with EPOLLERR.
    let handler: ReadyHandler | null = null;
    const fake: FdWatcher = { watch: (_fd, _ev, h) => { handler = h; }, unwatch: () => { handler = null; }, forget: () => { handler = null; } };
    const errors: Error[] = [];
    const src = new VmpressureSource(fake, cg.v1, 'low');
    src.start(() => {}, (err) => errors.push(err));
    stops.push(() => src.stop());
    expect(src.running).toBe(true);
    handler!(EPOLLERR);
    expect(errors).toHaveLength(1);
    expect(isPressureError(errors[0], 'EBALLOON_PRESSURE_LOST')).toBe(true);
    expect(errors[0]!.message).toMatch(/eventfd reported EPOLLERR/);
    expect(src.running).toBe(false);
    expect(handler).toBeNull();
  });
});
