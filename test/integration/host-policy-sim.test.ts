// The host-wide policy in the real host daemon: four simulated guests whose
// RAM is charged to one real memcg, with different weights and different
// spare memory. Lowering the memcg's limit makes a need; the daemon splits
// it among the guests by weight x spare (reclaimable cache first), caps the
// guest that has little to spare, and the freed guest RAM brings the memcg
// back within its headroom. `balloonctl history` shows the need, each VM's
// spare and its share.
import { spawnSync } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, expect, it } from 'vitest';
import { scrapeUnix } from '../../bench/device/prom.js';
import type { DaemonStatus, HostDecisionRecord } from '../../src/control/status.js';
import { DEFAULT_HOST_PARAMS, splitNeed, type Spare } from '../../src/policy/host.js';
import { DaemonProcess } from '../sim/daemon.js';
import { SimGuest } from '../sim/driver.js';
import { SKIP, skipUnlessAll } from '../skip.js';
import { haveV1Memory, haveV2Psi, isRoot, makeCgroup, makePsiGroup, MiB, useCgroupRig, V1_MEMORY, V2, waitUntil } from './pressure-helpers.js';
import { readScope } from '../../src/service/memcg-sample.js';

async function until(cond: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const BALLOONCTL = join(import.meta.dirname, '..', '..', 'dist', 'src', 'cli', 'balloonctl.js');
const RAM = 384 * MiB;
const STEP = 4 * MiB;
const HEADROOM = 600 * MiB;

/** The memcg this process is in (v1 memory hierarchy), to come back to. */
function ownMemcg(): string {
  const line = readFileSync('/proc/self/cgroup', 'utf8').split('\n').find((l) => /^\d+:([^:]*,)?memory(,[^:]*)?:/.test(l));
  return join(V1_MEMORY!, line ? line.slice(line.lastIndexOf(':') + 1) : '/');
}

const readNumber = (dir: string, file: string) => Number(readFileSync(join(dir, file), 'utf8').trim());

skipUnlessAll([isRoot, SKIP.notRoot], [haveV1Memory, SKIP.noV1Memory]).describe('host policy: several VMs in one real memcg', () => {
  const rig = useCgroupRig();
  let daemon: DaemonProcess | undefined;
  const guests: SimGuest[] = [];
  const followers: Array<{ stop: () => void; done: Promise<void> }> = [];
  const files: string[] = [];

  afterEach(async () => {
    for (const f of followers.splice(0)) {
      f.stop();
      await f.done;
    }
    for (const g of guests.splice(0)) g.close();
    await daemon?.stop();
    daemon = undefined;
    for (const f of files.splice(0)) rmSync(f, { force: true });
  });

  /** A VM in `memcg` and its simulated guest, whose RAM is charged to the memcg as QEMU's would be (touched from inside it). */
  async function addGuest(memcg: string, name: string, usedMiB: number, cacheMiB: number, options: Record<string, unknown> = {}, touchMiB?: number): Promise<SimGuest> {
    const socket = await daemon!.addVm(name, {
      pressure: 'vmpressure', memcg, step: `${STEP / MiB}M`, 'stats-interval': 1, 'page-reporting': false, ...options,
    });
    const g = await SimGuest.start({ socketPath: socket, ramBytes: RAM, autoStats: true });
    Object.assign(g.vm, { usedBytes: usedMiB * MiB, cacheBytes: cacheMiB * MiB });
    guests.push(g);
    const home = ownMemcg();
    writeFileSync(join(memcg, 'cgroup.procs'), String(process.pid));
    try {
      g.mem.touch(0, touchMiB === undefined ? g.mem.usableEnd : touchMiB * MiB);
    } finally {
      writeFileSync(join(home, 'cgroup.procs'), String(process.pid));
    }
    followers.push(g.follow());
    return g;
  }

  it.each([
    // MOM: below 20 % free every guest shrinks by 5 % of its size in a round.
    ['mom', (size: number) => 0.05 * size, 'mom round'],
    // Proxmox: at most 100 MiB per VM per round towards 80 % use.
    ['proxmox', () => 100 * MiB, 'proxmox round'],
  ] as const)('--policy %s runs its published round in the same runner, on the memcg\'s limit and usage', async (policy, most, event) => {
    const cg = makeCgroup({ limitBytes: 4096 * MiB });
    rig.cgroups.push(cg);
    daemon = await DaemonProcess.startHost();
    for (const name of ['x', 'y']) await addGuest(cg.v1, name, 48, 48, { policy, floor: '128M' });
    const status = (vm: string) => daemon!.request<DaemonStatus>({ op: 'status', vm });
    await until(async () => (await Promise.all(['x', 'y'].map(status))).every((s) => s.stats !== null), 10_000, 'stats from both guests');
    // 30 MiB free of the limit: 1-2 % free, 98 % used.
    writeFileSync(join(cg.v1, 'memory.limit_in_bytes'), String(readNumber(cg.v1, 'memory.usage_in_bytes') + 30 * MiB));
    await until(async () => (await Promise.all(['x', 'y'].map(status))).every((s) => s.targetBytes > 0), 20_000, `a ${policy} round (every 15 s for MOM, 10 s for Proxmox)`);
    for (const vm of ['x', 'y']) {
      const s = await status(vm);
      const d = s.decisions.find((x) => x.rule === 'host-policy-inflate')!;
      expect(d.event).toBe(event);
      expect(d.newTargetBytes).toBeLessThanOrEqual(Math.ceil(most(RAM)) + 4096);
      expect(d.newTargetBytes).toBeGreaterThan(0);
    }
    const host = (await daemon.request<{ host: HostDecisionRecord[] }>({ op: 'history' })).host;
    expect(host.find((x) => x.vms.some((v) => v.shareBytes > 0))).toMatchObject({ policy, trigger: 'round', group: `memcg ${cg.v1}` });
  }, 60_000);

  it('splits the need by weight and spare, caps the guest with little to spare, and the memcg gets its headroom back', async () => {
    const cg = makeCgroup({ limitBytes: 4096 * MiB });
    rig.cgroups.push(cg);
    const metricsSock = join(tmpdir(), `vub-hp-metrics-${process.pid}.sock`);
    files.push(metricsSock);
    daemon = await DaemonProcess.startHost(['--headroom', `${HEADROOM / MiB}M`, '--metrics-listen', `unix:${metricsSock}`]);
    // name, weight, guest used memory and page cache (MiB): d has little to spare.
    const spec = [['a', 1, 48, 48], ['b', 1, 48, 48], ['c', 2, 48, 48], ['d', 4, 300, 20]] as const;
    for (const [name, weight, used, cache] of spec) await addGuest(cg.v1, name, used, cache, { weight });
    const status = (vm: string) => daemon!.request<DaemonStatus>({ op: 'status', vm });
    // Every guest has sent stats: none is stale.
    await until(async () => (await Promise.all(spec.map(([n]) => status(n)))).every((s) => s.stats !== null), 10_000, 'stats from every guest');
    const hostHistory = async () => (await daemon!.request<{ host: HostDecisionRecord[] }>({ op: 'history' })).host;
    expect(await hostHistory()).toEqual([]); // the memcg has room: nothing to decide
    await new Promise((r) => setTimeout(r, 2500)); // two samples of the settled usage: no growth left to look ahead at

    // Free memory the host never backed, per guest, as the decision will see it (the balloons then free more).
    const unbackedOf = new Map(spec.map(([name]) => [name, RAM - guests.find((g) => g.opts.socketPath.endsWith(`${name}.sock`))!.mem.allocatedBytes()]));
    // Squeeze: 100 MiB free against a 600 MiB headroom -> about 500 MiB needed.
    const usage = readNumber(cg.v1, 'memory.usage_in_bytes');
    writeFileSync(join(cg.v1, 'memory.limit_in_bytes'), String(usage + 100 * MiB));
    const t0 = Date.now();
    let first: HostDecisionRecord | undefined;
    await until(async () => (first = (await hostHistory()).find((d) => d.vms.some((v) => v.shareBytes > 0))) !== undefined, 5000, 'a host decision');
    const d0 = first!;
    expect(d0).toMatchObject({ policy: 'host', group: `memcg ${cg.v1}` });
    expect(d0.needBytes).toBeGreaterThan(400 * MiB);
    expect(d0.needBytes).toBeLessThan(600 * MiB);
    const row = (vm: string) => d0.vms.find((v) => v.vm === vm)!;
    // What each can spare: MemAvailable above its reserve (10 % of RAM), less its free memory the host
    // never backed (the untouched top of the sim's RAM: its rings' area), which the balloon frees nothing of.
    const reserve = (RAM * DEFAULT_HOST_PARAMS.guestReservePercent) / 100;
    for (const [name, , used] of spec) {
      const unbacked = unbackedOf.get(name)!;
      expect(unbacked).toBeGreaterThan(0);
      expect(Math.abs(row(name).spareBytes - (RAM - used * MiB - reserve - unbacked))).toBeLessThan(2 * MiB);
    }
    // The split is the pure split of the need over those spares, in 4 MiB steps.
    const spares: Spare[] = d0.vms.map((v) => ({
      vm: v.vm, cacheBytes: v.cacheSpareBytes, freeBytes: v.spareBytes - v.cacheSpareBytes, overheadBytes: v.unbackedBytes ?? 0, reserveBytes: reserve, stale: v.stale,
    }));
    const want = splitNeed(d0.needBytes, spares, new Map(spec.map(([n, w]) => [n, w])), STEP);
    for (const w of want) {
      expect(row(w.vm).shareBytes).toBeGreaterThanOrEqual(Math.floor(w.bytes / STEP) * STEP);
      expect(row(w.vm).shareBytes).toBeLessThanOrEqual(Math.ceil(w.bytes / STEP) * STEP);
    }
    // Weight counts: c (weight 2) gives twice what a and b (weight 1) give from the free tier
    // (a and b tie: one of them may get the step of the largest remainder, the next decision evens it).
    expect(Math.abs(row('a').shareBytes - row('b').shareBytes)).toBeLessThanOrEqual(STEP);
    expect(row('c').shareBytes).toBeGreaterThan(1.8 * row('a').shareBytes - 20 * MiB);
    // Spare counts: d has the largest weight but little to spare; it gives at most that.
    // (plus the free memory the host never backed, which the balloon takes on the way and which frees nothing)
    expect(row('d').shareBytes).toBeLessThanOrEqual(row('d').spareBytes + (row('d').shareUnbackedBytes ?? 0));
    expect(row('d').shareBytes).toBeLessThan(row('c').shareBytes);
    // One decision asked for the whole need (many steps at once), not one step; what frees host memory counts.
    // (a share past a VM's backed free memory is asked for all its never-backed memory on top, one inside it for none)
    for (const v of d0.vms) {
      const sp = spares.find((s) => s.vm === v.vm)!;
      const given = v.shareBytes - (v.shareUnbackedBytes ?? 0);
      expect([0, v.unbackedBytes ?? 0], `${v.vm}'s never-backed memory asked`).toContain(v.shareUnbackedBytes ?? 0);
      if (given + STEP <= sp.freeBytes) expect(v.shareUnbackedBytes ?? 0, `${v.vm}: a share inside its backed free memory`).toBe(0);
    }
    const unbacked = d0.vms.reduce((n, v) => n + (v.shareUnbackedBytes ?? 0), 0);
    const asked = d0.vms.reduce((n, v) => n + v.shareBytes, 0) - unbacked;
    expect(asked).toBeGreaterThan(d0.needBytes - STEP / 2); // to the nearest step
    expect(asked).toBeLessThan(d0.needBytes + spec.length * STEP);

    // The guests inflate, the daemon frees their RAM, the memcg has its headroom again.
    const free = () => readNumber(cg.v1, 'memory.limit_in_bytes') - readNumber(cg.v1, 'memory.usage_in_bytes');
    await waitUntil(() => free() >= HEADROOM - 16 * MiB, 15_000, 'the headroom back');
    const coveredMs = Date.now() - t0;
    // The guests follow their targets to the end (the headroom can be back before the last steps are in).
    await until(async () => (await Promise.all(spec.map(([n]) => status(n)))).every((s) => s.balloonBytes === s.targetBytes), 10_000, 'balloons at their targets');
    const final = await Promise.all(spec.map(([n]) => status(n)));
    const total = final.reduce((n, s) => n + s.balloonBytes, 0);
    // No runaway: the balloons hold about the need, not the guests' whole spare.
    expect(total).toBeLessThan(d0.needBytes + unbacked + 64 * MiB);
    // Each VM's own history names the host decision, its spare and its share.
    const h = (await daemon.request<{ decisions: Array<{ rule: string; host?: { shareBytes: number; spareBytes: number; needBytes: number } }> }>({ op: 'history', vm: 'c' })).decisions;
    const inflate = h.find((x) => x.rule === 'host-policy-inflate');
    expect(inflate?.host).toMatchObject({ shareBytes: row('c').shareBytes, spareBytes: row('c').spareBytes, needBytes: d0.needBytes });
    // balloonctl history (no VM): the need, every VM's spare and share.
    const text = spawnSync(process.execPath, [BALLOONCTL, 'history'], { encoding: 'utf8', env: { ...process.env, VUB_RUN_DIR: join(daemon.dir, 'run') } });
    expect(text.status).toBe(0);
    expect(text.stdout).toMatch(/host (sample|pressure).* memcg .*: need \d+/);
    expect(text.stdout).toMatch(/VM +weight +spare +of it cache +share/);
    expect(text.stdout).toMatch(/\n +d +4 +[\d.]+ MiB/);
    // Guest pressure: c's workload grows until MemAvailable (8 MiB) is far below its
    // reserve (38.4 MiB): its next stats sample gives the whole shortfall back at once.
    const c = guests[2]!;
    const cBalloon = (await status('c')).balloonBytes;
    Object.assign(c.vm, { cacheBytes: 8 * MiB, usedBytes: RAM - cBalloon - 8 * MiB });
    const tPressure = Date.now();
    await until(async () => (await status('c')).targetBytes < cBalloon, 5000, 'c to get memory back');
    const giveBackMs = Date.now() - tPressure;
    const cHist = (await daemon.request<{ decisions: Array<{ rule: string; event: string; reason: string; oldTargetBytes: number; newTargetBytes: number }> }>({ op: 'history', vm: 'c' })).decisions;
    const back = cHist.filter((x) => x.rule === 'guest-pressure-deflate');
    expect(back).toHaveLength(1);
    expect(back[0]!.event).toMatch(/MemAvailable 8 MiB < reserve 38 MiB/);
    expect(back[0]!.reason).toMatch(/deflate 30 MiB at once/);
    expect((back[0]!.oldTargetBytes - back[0]!.newTargetBytes) / STEP).toBeGreaterThan(7); // not one 4 MiB step
    expect((await status('c')).pressure.guest.inPressure).toBe(true); // hysteresis: the host leaves c alone now
    // Metrics: the group's usage, limit and latest need.
    const prom = await scrapeUnix(metricsSock);
    const group = `memcg ${cg.v1}`;
    expect(prom).toContain(`vub_group_limit_bytes{group="${group}"} ${readNumber(cg.v1, 'memory.limit_in_bytes')}`);
    expect(prom).toMatch(new RegExp(`vub_group_need_bytes\\{group="${group}"\\} \\d+`));
    expect(prom).toMatch(new RegExp(`vub_group_usage_bytes\\{group="${group}"\\} \\d+`));
    console.log('host policy, 4 VMs in one memcg:', JSON.stringify({ giveBackMs,
      needMiB: Math.round(d0.needBytes / MiB), sharesMiB: Object.fromEntries(d0.vms.map((v) => [v.vm, Math.round(v.shareBytes / MiB)])),
      sparesMiB: Object.fromEntries(d0.vms.map((v) => [v.vm, Math.round(v.spareBytes / MiB)])), coveredMs,
      balloonsMiB: Object.fromEntries(final.map((s) => [s.vm, Math.round(s.balloonBytes / MiB)])),
    }));
    expect(daemon.find((l) => l.level >= 50)).toEqual([]);
  }, 60_000);

  it('the need goes to the guest whose free memory the host backs, not to one that never touched it (ballooning that frees nothing)', async () => {
    const cg = makeCgroup({ limitBytes: 4096 * MiB });
    rig.cgroups.push(cg);
    daemon = await DaemonProcess.startHost(['--headroom', '200M']);
    // Both report the same: 48 MiB used, no cache. "warm" touched all its RAM and freed it; "fresh" touched 48 MiB.
    await addGuest(cg.v1, 'warm', 48, 0);
    await addGuest(cg.v1, 'fresh', 48, 0, {}, 48);
    const status = (vm: string) => daemon!.request<DaemonStatus>({ op: 'status', vm });
    await until(async () => (await Promise.all(['warm', 'fresh'].map(status))).every((s) => s.stats !== null), 10_000, 'stats from both guests');
    await new Promise((r) => setTimeout(r, 2500)); // no growth left to look ahead at
    writeFileSync(join(cg.v1, 'memory.limit_in_bytes'), String(readNumber(cg.v1, 'memory.usage_in_bytes') + 100 * MiB));
    const hostHistory = async () => (await daemon!.request<{ host: HostDecisionRecord[] }>({ op: 'history' })).host;
    let d: HostDecisionRecord | undefined;
    await until(async () => (d = (await hostHistory()).find((x) => x.vms.some((v) => v.shareBytes > 0))) !== undefined, 5000, 'a host decision');
    const row = (vm: string) => d!.vms.find((v) => v.vm === vm)!;
    expect(row('fresh').spareBytes).toBeLessThan(16 * MiB); // its free memory is all unbacked
    expect(row('warm').spareBytes).toBeGreaterThan(250 * MiB);
    expect(row('fresh').shareBytes).toBe(0);
    expect(row('warm').shareBytes).toBeGreaterThanOrEqual(d!.needBytes);
    // And the memcg gets its headroom back from the warm guest alone.
    const free = () => readNumber(cg.v1, 'memory.limit_in_bytes') - readNumber(cg.v1, 'memory.usage_in_bytes');
    await waitUntil(() => free() >= 200 * MiB - 16 * MiB, 15_000, 'the headroom back');
    expect((await status('fresh')).balloonBytes).toBe(0);
  });

  it('once the need is met, the weights hold again: a guest that had nothing to spare when the need came, and then freed memory, takes its share from the other', async () => {
    const cg = makeCgroup({ limitBytes: 4096 * MiB });
    rig.cgroups.push(cg);
    daemon = await DaemonProcess.startHost(['--headroom', '200M', '--rebalance-after', '3s', '--give-back-step', '16M']);
    await addGuest(cg.v1, 'idle', 48, 0);
    const busy = await addGuest(cg.v1, 'busy', 330, 0); // 54 MiB available, 38.4 MiB reserve: 16 MiB to spare
    const status = (vm: string) => daemon!.request<DaemonStatus>({ op: 'status', vm });
    await until(async () => (await Promise.all(['idle', 'busy'].map(status))).every((s) => s.stats !== null), 10_000, 'stats from both guests');
    await new Promise((r) => setTimeout(r, 2500)); // no growth left to look ahead at
    writeFileSync(join(cg.v1, 'memory.limit_in_bytes'), String(readNumber(cg.v1, 'memory.usage_in_bytes') + 100 * MiB));
    const hostHistory = async () => (await daemon!.request<{ host: HostDecisionRecord[] }>({ op: 'history' })).host;
    let d: HostDecisionRecord | undefined;
    await until(async () => (d = (await hostHistory()).find((x) => x.vms.some((v) => v.shareBytes > 0))) !== undefined, 5000, 'a host decision');
    const asked = (vm: string) => d!.vms.find((v) => v.vm === vm)!.shareBytes;
    expect(asked('busy')).toBeLessThanOrEqual(16 * MiB);
    expect(asked('idle')).toBeGreaterThan(asked('busy') * 4);
    await until(async () => (await Promise.all(['idle', 'busy'].map(status))).every((s) => s.balloonBytes === s.targetBytes), 10_000, 'balloons at their targets');
    const before = await Promise.all(['idle', 'busy'].map(status));
    const total = before[0]!.balloonBytes + before[1]!.balloonBytes;
    // busy's job ends: it has as much to spare as idle now. Its fall is held for 2 s (just freed), then the
    // imbalance must last 3 s, then steps of at most 16 MiB move from idle to busy until both hold about half.
    Object.assign(busy.vm, { usedBytes: 48 * MiB });
    const t0 = Date.now();
    await until(async () => {
      const [i, b] = await Promise.all(['idle', 'busy'].map(status));
      return Math.abs(i!.targetBytes - b!.targetBytes) <= 2 * STEP && i!.balloonBytes === i!.targetBytes && b!.balloonBytes === b!.targetBytes;
    }, 30_000, 'the two balloons within a step of each other');
    const tookMs = Date.now() - t0;
    expect(tookMs).toBeGreaterThan(3000); // not before --rebalance-after
    const after = await Promise.all(['idle', 'busy'].map(status));
    // Memory moved, none was added or given back: the sum is the same.
    expect(Math.abs(after[0]!.balloonBytes + after[1]!.balloonBytes - total)).toBeLessThanOrEqual(STEP);
    const moves = (await hostHistory()).filter((x) => /rebalance: idle holds/.test(x.reason));
    expect(moves.length).toBeGreaterThanOrEqual(2); // at most 16 MiB a decision for a gap of about 50 MiB
    for (const m of moves) {
      const row = (vm: string) => m.vms.find((v) => v.vm === vm)!;
      expect(row('busy').shareBytes).toBeGreaterThan(0);
      expect(row('busy').shareBytes).toBeLessThanOrEqual(16 * MiB);
      expect(row('idle').shareBytes).toBe(-row('busy').shareBytes);
    }
    const busyHist = (await daemon.request<{ decisions: Array<{ rule: string; reason: string }> }>({ op: 'history', vm: 'busy' })).decisions;
    expect(busyHist.some((x) => x.rule === 'host-policy-inflate' && /rebalance in memcg .*more for this VM/.test(x.reason))).toBe(true);
    // The memcg keeps its headroom throughout: nothing to ask, nothing swapped.
    expect(readNumber(cg.v1, 'memory.limit_in_bytes') - readNumber(cg.v1, 'memory.usage_in_bytes')).toBeGreaterThan(150 * MiB);
    console.log('rebalance:', JSON.stringify({ tookMs, moves: moves.length, before: before.map((s) => s.balloonBytes / MiB), after: after.map((s) => s.balloonBytes / MiB) }));
  }, 60_000);

  it('--guest-reserve reaches the policy: with 90% of its RAM reserved, a guest with 85% free has nothing to spare', async () => {
    const cg = makeCgroup({ limitBytes: 4096 * MiB });
    rig.cgroups.push(cg);
    daemon = await DaemonProcess.startHost(['--headroom', '200M', '--guest-reserve', '90%']);
    await addGuest(cg.v1, 'warm', 48, 0);
    const status = (vm: string) => daemon!.request<DaemonStatus>({ op: 'status', vm });
    await until(async () => (await status('warm')).stats !== null, 10_000, 'stats from the guest');
    await new Promise((r) => setTimeout(r, 2500)); // no growth left to look ahead at
    writeFileSync(join(cg.v1, 'memory.limit_in_bytes'), String(readNumber(cg.v1, 'memory.usage_in_bytes') + 100 * MiB));
    let d: HostDecisionRecord | undefined;
    await until(async () => (d = (await daemon!.request<{ host: HostDecisionRecord[] }>({ op: 'history' })).host.find((x) => x.needBytes > 0)) !== undefined,
      5000, 'a host decision with a need');
    const warm = d!.vms.find((v) => v.vm === 'warm')!;
    // With the default 10% it could spare about 250 MiB (the test above); 90% leaves it at most RAM - 48 MiB - 90%.
    expect(warm.spareBytes).toBeLessThanOrEqual(Math.max(0, RAM * 0.1 - 48 * MiB) + STEP);
    expect(warm.shareBytes).toBe(0);
  });

  it('balloonctl tune changes a VM\'s policy, weight and reserve at run time, and says what to do with a bad one', async () => {
    daemon = await DaemonProcess.startHost();
    await daemon.addVm('t', { 'stats-interval': 0 });
    const ctl = (args: string[]) => spawnSync(process.execPath, [BALLOONCTL, ...args], { encoding: 'utf8', env: { ...process.env, VUB_RUN_DIR: join(daemon!.dir, 'run') } });
    expect(ctl(['tune', 't', '--policy', 'proxmox', '--weight', '2', '--reserve', '256M']).status).toBe(0);
    const s = await daemon.request<DaemonStatus>({ op: 'status', vm: 't' });
    expect(s.params).toMatchObject({ policy: 'proxmox', weight: 2, reserveBytes: 256 * MiB });
    expect(ctl(['tune', 't', '--policy', 'seed']).status).toBe(0);
    expect((await daemon.request<DaemonStatus>({ op: 'status', vm: 't' })).params).toMatchObject({ policy: 'seed', rateLimitMs: 0, waitForGuest: false });
    const bad = ctl(['tune', 't', '--policy', 'sed']);
    expect(bad.status).toBe(1);
    expect(bad.stderr).toMatch(/--policy "sed" is not a policy/);
    expect(bad.stderr).toMatch(/did you mean "seed"\?/);
    const heavy = ctl(['tune', 't', '--weight', '5000']);
    expect(heavy.status).toBe(1);
    expect(heavy.stderr).toMatch(/weight = 5000 is out of range[\s\S]*0 to 1000/);
  });

  it('reads the real files: a v1 memcg as its files say, a cgroup2 group with its PSI', async () => {
    const cg = makeCgroup({ limitBytes: 256 * MiB });
    rig.cgroups.push(cg);
    const r = readScope({ kind: 'v1', dir: cg.v1 });
    expect(r).toMatchObject({ limitBytes: 256 * MiB, psiSomeAvg10: null, source: 'memory.usage_in_bytes / memory.limit_in_bytes' });
    expect(r.usageBytes).toBeLessThanOrEqual(readNumber(cg.v1, 'memory.usage_in_bytes'));
    if (V2 === null || !haveV2Psi) return; // (v1-only view: nothing more to read)
    const g = makePsiGroup();
    try {
      const v2 = readScope({ kind: 'v2', dir: g.dir });
      expect(v2.psiSomeAvg10).toBeGreaterThanOrEqual(0);
      expect(v2.limitBytes).toBeGreaterThan(0);
      expect(v2.usageBytes).toBeLessThanOrEqual(v2.limitBytes);
    } finally {
      await g.remove();
    }
  });
});
