// The libvirt hook under a real libvirtd 9.0 (Debian): libvirtd runs our hook
// with the real domain XML, the hook starts the daemon, and a domain with our
// device (examples/libvirt/domain.xml) starts under TCG with the patched QEMU.
// The hook-started daemon runs as the unprivileged vhost-user-balloon user
// (docs/privileges.md) and still balloons the guest.
import { execFileSync, spawnSync } from 'node:child_process';
import { chownSync, existsSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { ControlClient } from '../../src/control/client.js';
import type { DaemonStatus } from '../../src/control/status.js';
import { pidFile, processStartTime } from '../../src/hook/daemon-control.js';
import { lookupUser } from '../../src/host/privileges.js';
import { controlSocketPath, DAEMON_USER, runDir, vhostSocketPath } from '../../src/paths.js';
import { buildArtefacts } from '../e2e/rig.js';
import { procIdentity } from '../integration/privilege-helpers.js';
import { SKIP, skipUnless } from '../skip.js';

const ROOT = join(import.meta.dirname, '..', '..');
const NAME = `vub-lv-${process.pid}`;
const MiB = 2 ** 20;
const HOOK = '/etc/libvirt/hooks/qemu.d/vhost-user-balloon';

const sh = (cmd: string, args: string[]) => execFileSync(cmd, args, { encoding: 'utf8', timeout: 120_000 });
const virsh = (...args: string[]) => spawnSync('virsh', ['-c', 'qemu:///system', ...args], { encoding: 'utf8', timeout: 120_000 });
const alive = (pid: number) => { try { process.kill(pid, 0); return true; } catch { return false; } };
/** The hook's pidfile: "PID STARTTIME". */
const hookPid = () => Number(readFileSync(pidFile(NAME), 'utf8').trim().split(/\s+/)[0]);
/** Files the hook's grant chowns to the daemon's user: their owners before the test, put back after it. */
const GRANTED = ['/sys/fs/cgroup/memory/cgroup.event_control', runDir()];
const owners = new Map<string, { uid: number; gid: number }>();

async function until<T>(f: () => T | Promise<T>, ok: (v: T) => boolean, ms: number, what: string): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (ok(v)) return v;
    if (Date.now() > end) throw new Error(`no ${what} within ${ms} ms (last: ${JSON.stringify(v)})`);
    await sleep(200);
  }
}

async function status(): Promise<DaemonStatus> {
  const c = await ControlClient.connect(controlSocketPath(NAME));
  try {
    return await c.request<DaemonStatus>({ op: 'status' });
  } finally {
    c.close();
  }
}

/** (Re)start virtlogd and libvirtd: libvirtd reads its hook directory when it starts. */
function restartLibvirt(): void {
  spawnSync('pkill', ['-x', 'libvirtd']);
  for (let i = 0; i < 50 && spawnSync('pgrep', ['-x', 'libvirtd']).status === 0; i++) execFileSync('sleep', ['0.1']);
  if (spawnSync('pgrep', ['-x', 'virtlogd']).status !== 0) sh('virtlogd', ['-d']);
  sh('libvirtd', ['-d']);
}

function domainXml(qemu: string, kernel: string, initrd: string): string {
  return readFileSync(join(ROOT, 'examples', 'libvirt', 'domain.xml'), 'utf8')
    .replace("<domain type='kvm'", "<domain type='qemu'") // no usable KVM here: TCG
    .replaceAll('vm1', NAME)
    .replace(/<emulator>[^<]*<\/emulator>/, `<emulator>${qemu}</emulator>`)
    .replace(/<kernel>[^<]*<\/kernel>/, `<kernel>${kernel}</kernel>`)
    .replace(/<initrd>[^<]*<\/initrd>/, `<initrd>${initrd}</initrd>`)
    .replace(/<cmdline>[^<]*<\/cmdline>/, '<cmdline>console=ttyS0 quiet panic=-1</cmdline>')
    .replace(/ config='[^']*'/, ''); // no config file: daemon defaults
}

skipUnless(process.getuid?.() === 0, SKIP.notRoot).describe('libvirt hook with a real libvirtd', () => {
  beforeAll(async () => {
    sh('bash', ['-c', `source ${ROOT}/native/lib.sh && apt_ensure libvirt-daemon-system libvirt-clients libvirt-daemon-driver-qemu`]);
    const { qemu, img } = await buildArtefacts();
    for (const f of GRANTED) if (existsSync(f)) owners.set(f, { uid: statSync(f).uid, gid: statSync(f).gid });
    // Also creates the daemon's user when it is missing.
    sh('sh', [join(ROOT, 'examples', 'libvirt', 'install-hook.sh')]);
    restartLibvirt();
    // `virsh list`, not `virsh version`: the latter fails while no QEMU is on the PATH (ours is in the cache).
    await until(() => virsh('list', '--all').status, (s) => s === 0, 20_000, 'libvirtd');
    const file = join(tmpdir(), `${NAME}.xml`);
    writeFileSync(file, domainXml(qemu, img.kernel, img.initrd));
    const d = virsh('define', file);
    rmSync(file);
    if (d.status !== 0) throw new Error(`virsh define: ${d.stderr}`);
  }, 20 * 60_000);

  afterAll(() => {
    virsh('destroy', NAME);
    virsh('undefine', NAME);
    spawnSync('sh', [join(ROOT, 'examples', 'libvirt', 'install-hook.sh'), '--uninstall']);
    spawnSync('pkill', ['-x', 'libvirtd']);
    for (const [f, o] of owners) if (existsSync(f)) chownSync(f, o.uid, o.gid);
  });

  it('virsh start: libvirtd runs the hook, the daemon starts, QEMU connects with our device', async () => {
    expect(existsSync(HOOK)).toBe(true);
    const r = virsh('start', NAME);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const pid = hookPid();
    expect(alive(pid)).toBe(true);
    // The pidfile records the daemon's start time (pid reuse never gets another process signalled).
    expect(readFileSync(pidFile(NAME), 'utf8')).toBe(`${pid} ${processStartTime(pid)}\n`);
    // Unprivileged: the hook started it as vhost-user-balloon, no capability, no supplementary group.
    const user = lookupUser(DAEMON_USER)!;
    const id = procIdentity(pid);
    console.log(`hook-started daemon: pid ${pid}, Uid ${id.uids.join(' ')}, Gid ${id.gids.join(' ')}, Groups [${id.groups.join(' ')}], CapEff ${id.capEff}, Seccomp ${id.seccomp}`);
    expect(id.uids).toEqual([user.uid, user.uid, user.uid, user.uid]);
    expect(id.gids).toEqual([user.gid, user.gid, user.gid, user.gid]);
    expect(id.groups).toEqual([]);
    expect(id.capEff).toBe(0n);
    expect(id.seccomp).toBe(2);
    // QEMU sends SET_FEATURES before SET_MEM_TABLE: wait for both.
    const s = await until(status, (x) => x.connected && x.features.length > 0 && x.guestRamBytes > 0, 60_000, 'negotiated features and the memory table');
    expect(s.features).toEqual(expect.arrayContaining(['MUST_TELL_HOST', 'STATS_VQ', 'VERSION_1']));
    expect(s.guestRamBytes).toBe(1024 * MiB);
  }, 180_000);

  it('QMP balloon through virsh qemu-monitor-command becomes a manual target; query-balloon reports actual', async () => {
    const r = virsh('qemu-monitor-command', NAME, JSON.stringify({ execute: 'balloon', arguments: { value: 768 * MiB } }));
    expect(r.status).toBe(0);
    const s = await until(status, (x) => x.actualBytes === 256 * MiB && x.counters.discardedBytes >= 256 * MiB, 60_000, 'actual 256 MiB, discarded');
    expect(s.targetBytes).toBe(256 * MiB);
    expect(s.hold?.owner).toBe('qemu-monitor');
    // The unprivileged daemon freed the ballooned guest RAM (MADV_REMOVE on QEMU's memfd) without a failure.
    expect(s.counters.badInput.discard_failed ?? 0).toBe(0);
    console.log(`hook-started unprivileged daemon: balloon ${s.balloonBytes / MiB} MiB; discarded ${s.counters.discardedBytes / MiB} MiB (balloon and free page reporting)`);
    const q = JSON.parse(virsh('qemu-monitor-command', NAME, '{"execute":"query-balloon"}').stdout) as { return: { actual: number } };
    expect(q.return.actual).toBe(768 * MiB);
  }, 120_000);

  it('virsh setmem --live reaches the daemon through QEMU\'s balloon handler, though <memballoon> is none', async () => {
    const r = virsh('setmem', NAME, String(512 * 1024), '--live'); // KiB
    expect(r.status).toBe(0);
    const s = await until(status, (x) => x.actualBytes === 512 * MiB, 60_000, 'actual 512 MiB');
    expect(s.targetBytes).toBe(512 * MiB);
  }, 120_000);

  it('virsh destroy: the release hook stops the daemon and removes its files', async () => {
    const pid = hookPid();
    expect(virsh('destroy', NAME).status).toBe(0);
    await until(() => alive(pid), (a) => !a, 10_000, 'daemon exit');
    expect(existsSync(pidFile(NAME))).toBe(false);
    expect(existsSync(vhostSocketPath(NAME))).toBe(false);
    expect(existsSync(controlSocketPath(NAME))).toBe(false);
  }, 60_000);

  it('a domain that does not opt in: the hook does nothing and exits 0', () => {
    const xml = `<domain type='qemu'><name>${NAME}-plain</name><devices/></domain>`;
    const r = spawnSync(HOOK, [`${NAME}-plain`, 'prepare', 'begin', '-'], { input: xml, encoding: 'utf8' });
    expect(r.status).toBe(0);
    expect(r.stderr).toBe('');
    expect(existsSync(pidFile(`${NAME}-plain`))).toBe(false);
    expect(existsSync(vhostSocketPath(`${NAME}-plain`))).toBe(false);
  });
});
