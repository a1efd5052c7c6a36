// The daemon as the unprivileged vhost-user-balloon user with the real
// patched QEMU and the Debian guest: it balloons the guest (QEMU's RssShmem
// drops by what the balloon took), deflates, takes real vmpressure events
// from a memcg whose cgroup.event_control `--grant` gave it, and stops with a
// message naming the file and the chown when that right is missing.
import { spawnSync } from 'node:child_process';
import { chownSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { SKIP, skipUnless, skipUnlessAll } from '../skip.js';
import type { UserIdentity } from '../../src/host/privileges.js';
import { DAEMON_JS } from '../sim/daemon.js';
import {
  type Allocator, cleanupLeftovers, ensureSwap, haveV1Memory, isRoot, makeCgroup, startAllocator, type TempSwap, type TestCgroup,
} from '../integration/pressure-helpers.js';
import { ensureDaemonUser, procIdentity } from '../integration/privilege-helpers.js';
import { MiB, PAGES_PER_MIB, Rig } from './rig.js';

const TARGET_MIB = 256;
const figures: Record<string, string> = {};

skipUnlessAll([isRoot, SKIP.notRoot], [haveV1Memory, SKIP.noV1Memory]).describe('an unprivileged daemon with a real guest', () => {
  let user: UserIdentity;
  let cg: TestCgroup;
  let swap: TempSwap | undefined;
  let rig: Rig | undefined;
  const allocators: Allocator[] = [];

  beforeAll(async () => {
    user = ensureDaemonUser();
    await cleanupLeftovers();
    swap = ensureSwap(); // reclaim in the pressure memcg needs somewhere to go
    cg = makeCgroup({ limitBytes: 64 * MiB });
    // The product's own grant, as the systemd unit runs it (the libvirt hook applies the same rule in-process).
    const g = spawnSync(process.execPath, [DAEMON_JS, '--grant', user.name, '--socket-path', '/nonexistent/vm.sock',
      '--pressure', 'vmpressure', '--memcg', cg.v1], { encoding: 'utf8' });
    if (g.status !== 0) throw new Error(`--grant failed: ${g.stderr}`);
    expect(statSync(join(cg.v1, 'cgroup.event_control')).uid).toBe(user.uid);
    rig = await Rig.start({
      daemonAs: { uid: user.uid, gid: user.gid },
      // Page reporting off: host memory may only drop through the balloon. Auto off until the pressure test;
      // a short hysteresis, so that the guest pressure of the allocation test is over by then.
      daemonArgs: ['--no-page-reporting', '--stats-interval', '1', '--pressure', 'vmpressure', '--memcg', cg.v1, '--no-auto', '--hysteresis', '2s',
        // The step per host event is the seed's rule; the host policy has its own tests.
        '--policy', 'seed', '--rate-limit', '1s', '--wait-for-guest'],
    });
    await rig.vm.ready(120_000);
    await rig.waitStatus((x) => x.connected && x.guestRamBytes > 0, 30_000, 'connection');
  }, 20 * 60_000);

  afterEach(async () => {
    for (const a of allocators.splice(0)) await a.kill();
  });

  afterAll(async () => {
    await rig?.stop();
    await cg?.remove();
    swap?.remove();
    console.log(`unprivileged e2e: ${JSON.stringify(figures)}`);
  });

  it('the daemon runs as vhost-user-balloon: no capability, no supplementary group, NoNewPrivs, seccomp on', async () => {
    const pid = rig!.daemon.child.pid!;
    const id = procIdentity(pid);
    expect(id.uids).toEqual([user.uid, user.uid, user.uid, user.uid]);
    expect(id.gids).toEqual([user.gid, user.gid, user.gid, user.gid]);
    expect(id.groups).toEqual([]);
    expect(id.capEff).toBe(0n);
    expect(id.noNewPrivs).toBe(1);
    expect(id.seccomp).toBe(2);
    expect((await rig!.status()).pid).toBe(pid);
    figures.daemonUid = `${id.uids[0]} (${user.name})`;
  });

  it(`a ${TARGET_MIB} MiB target: actual reaches it and QEMU's RssShmem drops by >= 90 % of it; back to 0, the guest allocates again`, async () => {
    const r = rig!;
    await r.touchAndFree(800);
    const before = await r.vm.rssShmemKiB();
    const t = performance.now();
    await r.setTarget(`${TARGET_MIB}M`);
    await r.vm.waitBalloonActual((r.memMiB - TARGET_MIB) * MiB, 120_000);
    await r.waitGuestBalloon(TARGET_MIB * PAGES_PER_MIB, 30_000);
    const s = await r.waitStatus((x) => x.counters.discardedBytes >= TARGET_MIB * MiB, 10_000, 'discard');
    const after = await r.vm.rssShmemKiB();
    figures.inflate = `${((performance.now() - t) / 1000).toFixed(2)} s`;
    figures.rssShmem = `${Math.round(before / 1024)} -> ${Math.round(after / 1024)} MiB (freed ${Math.round((before - after) / 1024)} MiB)`;
    expect(s.actualBytes).toBe(TARGET_MIB * MiB);
    expect(s.counters.badInput.discard_failed ?? 0).toBe(0);
    expect((before - after) * 1024).toBeGreaterThanOrEqual(0.9 * TARGET_MIB * MiB);

    await r.setTarget('0M');
    await r.vm.waitBalloonActual(r.memMiB * MiB, 120_000);
    await r.waitGuestBalloon(0, 30_000);
    expect((await r.status()).actualBytes).toBe(0);
    const ack = await r.vm.command('alloc 800', 120_000);
    expect(ack.fields.rc).toBe('0');
    await r.vm.command('free');
  }, 300_000);

  it('host pressure, unprivileged: real vmpressure events from the granted memcg inflate the guest by a step', async () => {
    const r = rig!;
    await r.ctl.request({ op: 'set-target', value: 'release', owner: 'e2e' });
    await r.ctl.request({ op: 'auto', enabled: true });
    const a = startAllocator([cg.v1], 200, 20_000);
    allocators.push(a);
    const t = performance.now();
    const s = await r.waitStatus((x) => x.pressure.host.events > 0 && x.actualBytes >= 32 * MiB, 60_000, 'a host-pressure step')
      .catch(async (err: Error) => {
        const last = await r.status();
        throw new Error(`${err.message}; ${last.pressure.host.events} host events, decisions ${JSON.stringify(last.decisions.slice(-5))}`);
      });
    figures.pressure = `${s.pressure.host.events} vmpressure events, balloon ${s.actualBytes / MiB} MiB after ${((performance.now() - t) / 1000).toFixed(1)} s`;
    expect(s.pressure.host.source).toBe(`vmpressure low on ${cg.v1}`);
    expect(s.decisions.some((d) => d.rule === 'host-pressure-inflate')).toBe(true);
    await a.kill();
    await r.ctl.request({ op: 'auto', enabled: false });
    await r.setTarget('0M');
    await r.vm.waitBalloonActual(r.memMiB * MiB, 120_000);
  }, 180_000);

  it('a memcg not granted to the user: the daemon stops at start, naming the file and the chown', async () => {
    const other = makeCgroup({ limitBytes: 64 * MiB });
    const dir = mkdtempSync(join(tmpdir(), 'vub-priv-'));
    chownSync(dir, user.uid, user.gid);
    try {
      const res = spawnSync(process.execPath, [DAEMON_JS, '--socket-path', join(dir, 'vm.sock'), '--pressure', 'vmpressure', '--memcg', other.v1], {
        encoding: 'utf8', timeout: 15_000, uid: user.uid, gid: user.gid,
      });
      expect(res.status).toBe(1);
      expect(res.stderr).toContain(`cannot open ${other.v1}/cgroup.event_control: Permission denied`);
      expect(res.stderr).toContain(`chown vhost-user-balloon ${other.v1}/cgroup.event_control`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
      await other.remove();
    }
  }, 60_000);
});
