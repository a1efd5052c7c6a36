// The daemon as the unprivileged vhost-user-balloon user, with the
// simulated guest and real cgroups: it balloons with no capability, every
// thread is under the seccomp denylist and denied calls fail with EPERM from
// inside the daemon; --grant gives it a memcg and real vmpressure events
// follow; a right that is missing is a startup error naming the file and the
// command that grants it (docs/privileges.md).
import { spawnSync } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ControlClient } from '../../src/control/client.js';
import type { DaemonStatus } from '../../src/control/status.js';
import type { UserIdentity } from '../../src/host/privileges.js';
import { threadSeccompModes } from '../../src/host/seccomp.js';
import { DAEMON_JS, DaemonProcess } from '../sim/daemon.js';
import { SimGuest } from '../sim/driver.js';
import { PAGE } from '../sim/guest-memory.js';
import { SKIP, skipUnless } from '../skip.js';
import {
  haveV1Memory, haveV2Psi, isRoot, makeCgroup, makePsiGroup, MiB, type PsiGroup, startAllocator, useCgroupRig,
} from './pressure-helpers.js';
import { ensureDaemonUser, procIdentity } from './privilege-helpers.js';

async function until(cond: () => boolean, ms = 5000): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (!cond() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  return cond();
}

/** The daemon as `user` in a directory it owns; exits with its status and stderr (startup errors). */
function runAs(user: UserIdentity, args: string[], env: Record<string, string> = {}, timeout = 10_000) {
  const dir = mkdtempSync(join(tmpdir(), 'vub-priv-'));
  chownSync(dir, user.uid, user.gid);
  try {
    return spawnSync(process.execPath, [DAEMON_JS, '--socket-path', join(dir, 'vm.sock'), ...args], {
      encoding: 'utf8', timeout, uid: user.uid, gid: user.gid, env: { ...process.env, ...env },
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

skipUnless(isRoot, SKIP.notRoot).describe('the daemon as the unprivileged vhost-user-balloon user', () => {
  let user: UserIdentity;
  const daemons: DaemonProcess[] = [];
  const guests: SimGuest[] = [];
  const rig = useCgroupRig();
  const psiGroups: PsiGroup[] = [];

  beforeAll(() => {
    user = ensureDaemonUser();
  });
  afterEach(async () => {
    for (const g of guests.splice(0)) g.close();
    for (const d of daemons.splice(0)) await d.stop();
    for (const p of psiGroups.splice(0)) await p.remove();
  });

  const start = async (args: string[], env: Record<string, string> = {}) => {
    const d = await DaemonProcess.start(['--stats-interval', '0', ...args], env, undefined, { uid: user.uid, gid: user.gid });
    daemons.push(d);
    return d;
  };

  it('runs with no capability and no supplementary group, every thread filtered, and balloons the simulated guest', async () => {
    const d = await start([]);
    await d.waitForLog((l) => l.msg === 'seccomp filter installed on every thread');
    const pid = d.child.pid!;
    const id = procIdentity(pid);
    expect(id.uids).toEqual([user.uid, user.uid, user.uid, user.uid]);
    expect(id.gids).toEqual([user.gid, user.gid, user.gid, user.gid]);
    expect(id.groups).toEqual([]);
    expect(id.capEff).toBe(0n);
    expect(id.noNewPrivs).toBe(1);
    const installed = d.find((l) => l.msg === 'seccomp filter installed on every thread')[0]!;
    expect(installed.deniedSyscalls).toBeGreaterThanOrEqual(50);

    const guest = await SimGuest.start({ socketPath: d.socketPath, ramBytes: 256 * MiB });
    guests.push(guest);
    const len = 64 * MiB;
    const top = guest.mem.usableEnd;
    guest.mem.touch(0, top);
    await guest.inflate(len / PAGE);
    // The discard thread starts with the first inflate (after the filter): it too must have it.
    expect(await until(() => guest.mem.backedBytes(top - len, len) === 0)).toBe(true);
    const modes = threadSeccompModes(pid);
    console.log(`unprivileged daemon: ${modes.length} threads, seccomp modes ${JSON.stringify([...new Set(modes)])}; ${installed.threads} at install`);
    expect(modes.length).toBeGreaterThan(Number(installed.threads));
    expect(modes.every((m) => m === 2)).toBe(true);
    await guest.deflate(len / PAGE);
    guest.mem.touch(top - len, len, 0x5a);
    expect(guest.readConfig()).toMatchObject({ num_pages: 0, actual: 0 });
    const ctl = await ControlClient.connect(d.controlPath);
    try {
      const s = await ctl.request<DaemonStatus>({ op: 'status' });
      expect(s.counters.discardedBytes).toBe(len);
      expect(s.pid).toBe(pid);
    } finally {
      ctl.close();
    }
  });

  it('inside the daemon, denied system calls fail with EPERM (clone3 with ENOSYS); with --no-seccomp they reach the kernel', async () => {
    const on = await start([], { VUB_TEST_SECCOMP_PROBE: '1' });
    const probeOn = await on.waitForLog((l) => l.msg.startsWith('seccomp probe'));
    expect(probeOn.probe).toEqual({ execve: 'EPERM', unshare: 'EPERM', setns: 'EPERM', clone3: 'ENOSYS', spawn: 'EPERM' });
    const off = await start(['--no-seccomp'], { VUB_TEST_SECCOMP_PROBE: '1' });
    const probeOff = await off.waitForLog((l) => l.msg.startsWith('seccomp probe'));
    // Unfiltered, the same calls fail (or do nothing) for their own reasons.
    expect(probeOff.probe).toEqual({ execve: 'ENOENT', unshare: 'OK', setns: 'EBADF', clone3: 'EINVAL', spawn: 'exit 0' });
    expect(off.find((l) => l.msg === 'seccomp filter off (--no-seccomp)')).toHaveLength(1);
    expect(threadSeccompModes(off.child.pid!).every((m) => m === 0)).toBe(true);
    expect(procIdentity(off.child.pid!).noNewPrivs).toBe(0);
  });

  it('--help explains --seccomp and --grant', () => {
    const r = spawnSync(process.execPath, [DAEMON_JS, '--help'], { encoding: 'utf8' });
    expect(r.stdout).toMatch(/--seccomp .*execve/s);
    expect(r.stdout).toMatch(/--grant .*cgroup\.event_control/s);
  });

  skipUnless(haveV1Memory, SKIP.noV1Memory).it('a memcg whose cgroup.event_control was not granted: exit 1, naming the file and the chown that grants it', () => {
    const cg = makeCgroup({ limitBytes: 64 * MiB });
    rig.cgroups.push(cg);
    const r = runAs(user, ['--pressure', 'vmpressure', '--memcg', cg.v1]);
    expect(r.status).toBe(1);
    const file = `${cg.v1}/cgroup.event_control`;
    expect(r.stderr).toContain(`EBALLOON_PRESSURE_PERMISSION: cannot open ${file}: Permission denied`);
    expect(r.stderr).toContain(`the daemon runs as vhost-user-balloon (uid ${user.uid}) and needs write access to it`);
    expect(r.stderr).toContain(`chown vhost-user-balloon ${file}`);
    console.log(`missing right, as the operator sees it:\n${r.stderr.split('\n').filter((l) => !l.startsWith('{')).join('\n')}`);
  });

  skipUnless(haveV1Memory, SKIP.noV1Memory).it('--grant chowns the memcg\'s cgroup.event_control (idempotently); the unprivileged daemon then gets real vmpressure events', async () => {
    const cg = makeCgroup({ limitBytes: 64 * MiB });
    rig.cgroups.push(cg);
    const file = `${cg.v1}/cgroup.event_control`;
    const grant = () => spawnSync(process.execPath, [DAEMON_JS, '--grant', user.name, '--socket-path', '/nonexistent/vm.sock', '--pressure', 'vmpressure', '--memcg', cg.v1], { encoding: 'utf8' });
    const g1 = grant();
    expect(g1.status).toBe(0);
    expect(g1.stdout).toContain(`chowned ${file} to vhost-user-balloon`);
    expect(g1.stdout).toContain(`ok ${cg.v1}/memory.pressure_level: vhost-user-balloon has read access`);
    expect(statSync(file).uid).toBe(user.uid);
    expect(statSync(file).gid).toBe(0);
    expect(grant().stdout).toContain(`ok ${file}: vhost-user-balloon has write access`);

    const d = await start(['--pressure', 'vmpressure', '--memcg', cg.v1]);
    await d.waitForLog((l) => l.msg === 'watching host memory pressure');
    const a = startAllocator([cg.v1], 200, 10_000);
    rig.allocators.push(a);
    const ctl = await ControlClient.connect(d.controlPath);
    try {
      let s: DaemonStatus | null = null;
      const end = Date.now() + 20_000;
      while (Date.now() < end) {
        s = await ctl.request<DaemonStatus>({ op: 'status' });
        if (s.pressure.host.events > 0) break;
        await new Promise((r) => setTimeout(r, 200));
      }
      console.log(`unprivileged vmpressure: ${s!.pressure.host.events} events from ${s!.pressure.host.source}`);
      expect(s!.pressure.host.events).toBeGreaterThan(0);
    } finally {
      ctl.close();
    }
  }, 60_000);

  skipUnless(haveV2Psi, SKIP.noPsi).it('PSI: /proc/pressure/memory takes an unprivileged trigger (2 s window); a cgroup v2 group\'s memory.pressure needs --grant', async () => {
    const sys = await start(['--pressure', 'psi']);
    await sys.waitForLog((l) => l.msg === 'watching host memory pressure' && String(l.source).includes('/proc/pressure/memory'));
    const group: PsiGroup = makePsiGroup();
    psiGroups.push(group);
    const dir = group.dir;
    const denied = runAs(user, ['--pressure', 'psi', '--memcg', dir]);
    expect(denied.status).toBe(1);
    expect(denied.stderr).toContain(`chown vhost-user-balloon ${dir}/memory.pressure`);
    const g = spawnSync(process.execPath, [DAEMON_JS, '--grant', user.name, '--socket-path', '/nonexistent/vm.sock', '--pressure', 'psi', '--memcg', dir], { encoding: 'utf8' });
    expect(g.stdout).toContain(`chowned ${dir}/memory.pressure to vhost-user-balloon`);
    const d = await start(['--pressure', 'psi', '--memcg', dir]);
    await d.waitForLog((l) => l.msg === 'watching host memory pressure' && String(l.source).includes(`${dir}/memory.pressure`));
  });

  it('sockets in a run directory the user may not write: a clear error naming the directory and the grant', () => {
    const dir = `/run/vub-priv-test-${process.pid}`;
    const r = spawnSync(process.execPath, [DAEMON_JS, '--vm', 'x', '--pressure', 'none'], {
      encoding: 'utf8', timeout: 10_000, uid: user.uid, gid: user.gid, env: { ...process.env, VUB_RUN_DIR: dir },
    });
    expect(r.status).toBe(1);
    expect(r.stderr).toContain(`cannot create the run directory ${dir}: EACCES`);
    expect(r.stderr).toContain(`install -d -o vhost-user-balloon -m 0755 ${dir}`);
    expect(existsSync(dir)).toBe(false);
  });
});
