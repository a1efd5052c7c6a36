// PSI triggers with real cgroups, on either layout. A hybrid host (this
// project's machines) mounts cgroup v1 for memory and cgroup2 (unified)
// without controllers, yet every cgroup2 group has a memory.pressure file and
// PSI accounts stalls by cgroup2 membership: an allocator that sits in a
// limited v1 memcg *and* a cgroup2 group fires a trigger on that group, and
// the system-wide /proc/pressure/memory one. A v2-only host (Debian 12)
// squeezes the cgroup2 group through its own memory.max instead
// (makePsiGroup).
import { expect, it } from 'vitest';
import { silentLogger } from '../../src/log.js';
import { isPressureError } from '../../src/pressure/errors.js';
import { PsiSource, psiTriggerText } from '../../src/pressure/psi.js';
import { PressureSupervisor } from '../../src/pressure/supervisor.js';
import type { HostPressureEvent } from '../../src/pressure/types.js';
import { SKIP, skipUnless, skipUnlessAll } from '../skip.js';
import {
  canSqueezePsiGroup, haveV2Psi, isRoot, makePsiGroup, MiB, sleep, startAllocator, SYSTEM_PSI, useCgroupRig, waitUntil,
} from './pressure-helpers.js';

const TRIGGER = { kind: 'some', stallUs: 100_000, windowUs: 2_000_000 } as const;
const squeezable = skipUnless(canSqueezePsiGroup, SKIP.noMemoryLimit);

skipUnlessAll([isRoot, SKIP.notRoot], [haveV2Psi, SKIP.noPsi]).describe('PSI triggers on real cgroups', () => {
  const rig = useCgroupRig();
  const { cgroups, allocators, stops } = rig;

  function watch(file: string, opts: { privateLoop?: boolean } = {}) {
    const seen: Array<{ t: number; ev: HostPressureEvent }> = [];
    const errors: Error[] = [];
    const src = new PsiSource(rig.loop, file, TRIGGER, opts);
    src.start((ev) => seen.push({ t: performance.now(), ev }), (err) => errors.push(err));
    stops.push(() => src.stop());
    return { src, seen, errors };
  }

  squeezable.it('a cgroup2 trigger and the system-wide trigger fire under the allocator, at most once per window', async () => {
    const cg = makePsiGroup({ limitBytes: 64 * MiB });
    cgroups.push(cg);
    const file = cg.psiFile;
    const group = watch(file);
    const system = watch(SYSTEM_PSI);
    const a = startAllocator(cg.members, 200, 9000);
    allocators.push(a);
    const joinedAt = await a.joined;
    await waitUntil(() => group.seen.length > 0, 15_000, 'the first PSI event on the cgroup2 group');
    const first = group.seen[0]!.t;
    await sleep(6000);
    const window = group.seen.filter((s) => s.t < first + 6000);
    const figures = {
      firstEventAfterJoinMs: Math.round(first - joinedAt),
      groupEventsIn6s: window.length,
      systemEventsSoFar: system.seen.length,
    };
    console.log(`psi "${psiTriggerText(TRIGGER)}" under a 200 MiB allocator in a 64 MiB memcg:`, JSON.stringify(figures));
    expect(group.errors).toEqual([]);
    expect(group.seen.every((s) => s.ev.source === 'psi' && s.ev.level === 'some 100000 2000000' && s.ev.count === 1 && s.ev.path === file)).toBe(true);
    // The kernel fires a trigger at most once per 2 s window: pre-collapsed.
    expect(window.length).toBeGreaterThanOrEqual(1);
    expect(window.length).toBeLessThanOrEqual(Math.ceil(6000 / 2000) + 1);
    for (let i = 1; i < group.seen.length; i++) expect(group.seen[i]!.t - group.seen[i - 1]!.t).toBeGreaterThan(1900);
    // System-wide PSI sees the same stalls.
    expect(system.seen.length).toBeGreaterThanOrEqual(1);
  }, 40_000);

  squeezable.it('watched directly in the daemon\'s default (uv) loop a trigger loses its events; PsiSource waits on a private loop', async () => {
    // psi_trigger_poll clears the event: libuv polling our epoll fd consumes
    // it before our epoll_wait looks (see psi.ts).
    expect(rig.loop.mode).toBe('uv');
    const cg = makePsiGroup({ limitBytes: 64 * MiB });
    cgroups.push(cg);
    const file = cg.psiFile;
    const own = watch(file);
    const nested = watch(file, { privateLoop: false });
    expect([own.src.privateLoop, nested.src.privateLoop]).toEqual([true, false]);
    const a = startAllocator(cg.members, 200, 6000);
    allocators.push(a);
    await waitUntil(() => own.seen.length >= 2, 15_000, 'two PSI events on the private loop');
    console.log('psi events, private loop vs nested in the uv loop:', JSON.stringify({ privateLoop: own.seen.length, nested: nested.seen.length }));
    expect(nested.seen).toEqual([]);
    expect(nested.errors).toEqual([]);
  }, 40_000);

  it('the unprivileged window rule: a 1 s window is refused with EBALLOON_PRESSURE_REGISTER and a hint', () => {
    const src = new PsiSource(rig.loop, SYSTEM_PSI, { kind: 'some', stallUs: 150_000, windowUs: 1_000_000 });
    let err: unknown;
    try {
      src.start(() => {}, () => {});
    } catch (e) {
      err = e;
    }
    // Root here lacks CAP_SYS_RESOURCE (see ARCHITECTURE.md); with it the kernel would accept.
    expect(isPressureError(err, 'EBALLOON_PRESSURE_REGISTER')).toBe(true);
    expect((err as Error).message).toMatch(/PSI trigger "some 150000 1000000" on \/proc\/pressure\/memory refused: Invalid argument/);
    expect((err as Error & { hint: string }).hint).toMatch(/multiple of 2 s/);
    expect(src.running).toBe(false);
  });

  it('a removed cgroup2 group (EPOLLERR) is lost and retried; the group coming back is picked up again', async () => {
    const cg = makePsiGroup();
    cgroups.push(cg);
    const file = cg.psiFile;
    const src = new PsiSource(rig.loop, file, TRIGGER);
    const sup = new PressureSupervisor(src, null, () => {}, silentLogger(), { minBackoffMs: 100, maxBackoffMs: 400 });
    stops.push(() => sup.stop());
    sup.start();
    await cg.remove();
    await waitUntil(() => sup.state === 'retrying', 3000, 'the supervisor to notice the removal');
    expect(sup.status().lastError).toMatch(/EBALLOON_PRESSURE_LOST: .*went away/);
    await sleep(500);
    expect(sup.lastError).toMatch(/EBALLOON_PRESSURE_NOENT/);
    const again = makePsiGroup({ name: cg.dir.split('/').at(-1)! });
    cgroups.push(again);
    await waitUntil(() => sup.state === 'running', 2000, 'the supervisor to set the trigger again');
  }, 20_000);
});
