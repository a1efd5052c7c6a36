// The libvirt hook under a real libvirtd 9.0 (Debian) with the host daemon.
// The test starts the daemon itself as the systemd unit would (granted as
// root with --grant, then as the unprivileged vhost-user-balloon user with
// UMask=0007, on the default run directory), installs the hook, and starts
// two opted-in domains (examples/libvirt/domain.xml) at once under TCG with
// the patched QEMU and the Debian guest: both are served by the one daemon,
// one is ballooned and QEMU's memory goes down (libvirt gets the
// balloon-change events), the daemon survives a SIGKILL restart (QEMU
// reconnects to the restored VMs) and a libvirtd restart (the reconnect hook
// re-adds a VM it lost), a virsh save and restore (libvirt's migration to a
// file) brings the balloon back and frees it again, and destroying both
// removes both VMs while the daemon keeps running. With the daemon stopped,
// an opted-in domain does not start and libvirt shows how to start the
// daemon; a domain that does not opt in starts anyway.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { DaemonStatus } from '../../src/control/status.js';
import { lookupUser, type UserIdentity } from '../../src/host/privileges.js';
import { DAEMON_USER } from '../../src/paths.js';
import type { HostStatus } from '../../src/service/host.js';
import { buildArtefacts } from '../e2e/rig.js';
import { procIdentity } from '../integration/privilege-helpers.js';
import { DaemonProcess, DAEMON_JS } from '../sim/daemon.js';
import { SKIP, skipUnless } from '../skip.js';

const ROOT = join(import.meta.dirname, '..', '..');
const BALLOONCTL = join(ROOT, 'dist', 'src', 'cli', 'balloonctl.js');
const NAME = `vub-lv-${process.pid}`;
const A = `${NAME}-a`;
const B = `${NAME}-b`;
const PLAIN = `${NAME}-plain`;
const MiB = 2 ** 20;
const GUEST_MIB = 512;
const TOUCH_MIB = 360;
const TARGET_MIB = 256;
const HOOK = '/etc/libvirt/hooks/qemu.d/vhost-user-balloon';
// The unit's directories: the default run directory (the hook and balloonctl find the daemon there).
const RUN = '/run/vhost-user-balloon';
const SERIAL_A = `/tmp/${A}.serial`;
const QEMU_USER = 'libvirt-qemu';

const sh = (cmd: string, args: string[]) => execFileSync(cmd, args, { encoding: 'utf8', timeout: 120_000 });
const virsh = (...args: string[]) => spawnSync('virsh', ['-c', 'qemu:///system', ...args], { encoding: 'utf8', timeout: 180_000 });
/** virsh in the background: two domains start at once. */
const virshAsync = (...args: string[]) => new Promise<{ status: number | null; stdout: string; stderr: string }>((resolve) => {
  const c = spawn('virsh', ['-c', 'qemu:///system', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  c.stdout.setEncoding('utf8').on('data', (d: string) => { stdout += d; });
  c.stderr.setEncoding('utf8').on('data', (d: string) => { stderr += d; });
  c.once('exit', (status) => resolve({ status, stdout, stderr }));
});
const balloonctl = (...args: string[]) => spawnSync(process.execPath, [BALLOONCTL, ...args], { encoding: 'utf8', timeout: 20_000 });
const qemuPid = (dom: string) => Number(readFileSync(`/run/libvirt/qemu/${dom}.pid`, 'utf8').trim());
const rssShmemMiB = (pid: number) => Number(/^RssShmem:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? NaN) / 1024;
const inGroup = (user: string, group: string) => spawnSync('id', ['-nG', user], { encoding: 'utf8' }).stdout.split(/\s+/).includes(group);

/** Files the grants chown to the daemon's user: their owners before the test, put back after it. */
const GRANTED = ['/sys/fs/cgroup/memory/cgroup.event_control', RUN];
const owners = new Map<string, { uid: number; gid: number }>();
let qemuWasInGroup = true;

async function until<T>(f: () => T | Promise<T>, ok: (v: T) => boolean, ms: number, what: string): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    let v: T | undefined;
    try {
      v = await f();
      if (ok(v)) return v;
    } catch (err) {
      if (Date.now() > end) throw err;
    }
    if (Date.now() > end) throw new Error(`no ${what} within ${ms} ms (last: ${JSON.stringify(v)})`);
    await sleep(250);
  }
}

/** libvirtd by the pid it wrote (it reads its hook directory when it starts). */
function stopLibvirtd(): void {
  let pid = 0;
  try {
    pid = Number(readFileSync('/run/libvirtd.pid', 'utf8').trim());
  } catch {
    return;
  }
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    return;
  }
  for (let i = 0; i < 100; i++) {
    try {
      process.kill(pid, 0);
    } catch {
      return;
    }
    execFileSync('sleep', ['0.1']);
  }
}

async function startLibvirtd(): Promise<void> {
  if (spawnSync('pgrep', ['-x', 'virtlogd']).status !== 0) sh('virtlogd', ['-d']);
  sh('libvirtd', ['-d']);
  // `virsh list`, not `virsh version`: the latter fails while no QEMU is on the PATH (ours is in the cache).
  await until(() => virsh('list', '--all').status, (s) => s === 0, 30_000, 'libvirtd');
}

function domainXml(name: string, qemu: string, kernel: string, initrd: string, o: { config?: string; scenario?: string; serialFile?: string }): string {
  let xml = readFileSync(join(ROOT, 'examples', 'libvirt', 'domain.xml'), 'utf8')
    .replace(/<!--[\s\S]*?-->\n?/g, '')
    .replace("<domain type='kvm'", "<domain type='qemu'") // no usable KVM here: TCG
    .replaceAll('vm1', name)
    .replace(/<memory unit='MiB'>\d+<\/memory>/, `<memory unit='MiB'>${GUEST_MIB}</memory>`)
    .replace(/<emulator>[^<]*<\/emulator>/, `<emulator>${qemu}</emulator>`)
    .replace(/<kernel>[^<]*<\/kernel>/, `<kernel>${kernel}</kernel>`)
    .replace(/<initrd>[^<]*<\/initrd>/, `<initrd>${initrd}</initrd>`)
    .replace(/<cmdline>[^<]*<\/cmdline>/, `<cmdline>console=ttyS0 quiet panic=-1 vub.report=2${o.scenario ? ` vub.scenario=${o.scenario}` : ''}</cmdline>`)
    .replace(/ config='[^']*'/, o.config ? ` config='${o.config}'` : '');
  if (o.serialFile) {
    xml = xml.replace("<serial type='pty'/>", `<serial type='file'><source path='${o.serialFile}'/></serial>`).replace("<console type='pty'/>", '');
  }
  return xml;
}

function define(xml: string, name: string): void {
  const file = `/tmp/${name}.xml`;
  writeFileSync(file, xml);
  const d = virsh('define', file);
  rmSync(file);
  if (d.status !== 0) throw new Error(`virsh define ${name}: ${d.stderr}`);
}

skipUnless(process.getuid?.() === 0, SKIP.notRoot).describe('libvirt hook and the host daemon with a real libvirtd', () => {
  let user: UserIdentity;
  let dir: string;
  let daemon: DaemonProcess | undefined;

  const hostStatus = () => daemon!.request<HostStatus>({ op: 'host-status' });
  const vmStatus = (vm: string) => daemon!.request<DaemonStatus>({ op: 'status', vm });
  /** The daemon as the unit runs it: the grant as root (ExecStartPre=+), then the user with UMask=0007. */
  const startDaemon = async () => {
    const g = spawnSync(process.execPath, [DAEMON_JS, '--grant', DAEMON_USER, '--host', '--state-dir', join(dir, 'state'), '--config-dir', join(dir, 'conf')],
      { encoding: 'utf8', env: { ...process.env, VUB_RUN_DIR: RUN } });
    if (g.status !== 0) throw new Error(`--grant --host: ${g.stderr}`);
    daemon = await DaemonProcess.startHost([], { VUB_RUN_DIR: RUN }, dir, { as: { uid: user.uid, gid: user.gid }, umask: 0o007 });
  };

  beforeAll(async () => {
    sh('bash', ['-c', `source ${ROOT}/native/lib.sh && apt_ensure libvirt-daemon-system libvirt-clients libvirt-daemon-driver-qemu`]);
    const { qemu, img } = await buildArtefacts();
    for (const f of GRANTED) if (existsSync(f)) owners.set(f, { uid: statSync(f).uid, gid: statSync(f).gid });
    qemuWasInGroup = inGroup(QEMU_USER, DAEMON_USER);
    // Also creates the daemon's user when it is missing, and puts QEMU's user in its group.
    sh('sh', [join(ROOT, 'examples', 'libvirt', 'install-hook.sh')]);
    user = lookupUser(DAEMON_USER)!;
    stopLibvirtd();
    await startLibvirtd();
    dir = mkdtempSync('/tmp/vub-lv-host-');
    chmodSync(dir, 0o755);
    await startDaemon();
    // A: a config file of its own (no free page reporting, so that only the balloon gives memory back; no automatic ballooning)
    // and a guest that touches memory and frees it; B: the defaults.
    const configA = join(dir, `${A}.json`);
    // Automatic ballooning off: the host here has room, so the host policy would give back any balloon
    // that is not held (a restored VM arrives without its hold).
    writeFileSync(configA, JSON.stringify({ 'page-reporting': false, 'stats-interval': 1, auto: false }));
    rmSync(SERIAL_A, { force: true });
    define(domainXml(A, qemu, img.kernel, img.initrd, { config: configA, scenario: `free:${TOUCH_MIB}`, serialFile: SERIAL_A }), A);
    define(domainXml(B, qemu, img.kernel, img.initrd, {}), B);
    // Not opted in: no metadata, no device of ours.
    define(domainXml(PLAIN, qemu, img.kernel, img.initrd, {})
      .replace(/<metadata>[\s\S]*<\/metadata>/, '').replace(/<qemu:commandline>[\s\S]*<\/qemu:commandline>/, ''), PLAIN);
  }, 20 * 60_000);

  afterAll(async () => {
    for (const d of [A, B, PLAIN]) {
      virsh('destroy', d);
      virsh('undefine', d);
    }
    spawnSync('sh', [join(ROOT, 'examples', 'libvirt', 'install-hook.sh'), '--uninstall']);
    if (qemuWasInGroup) spawnSync('usermod', ['-aG', DAEMON_USER, QEMU_USER]);
    stopLibvirtd();
    if (daemon) console.log(`host daemon log (last 15): ${daemon.logs.slice(-15).map((l) => `${l.vm ?? '-'}: ${l.msg}`).join(' | ')}`);
    await daemon?.stop();
    for (const [f, o] of owners) if (existsSync(f)) chownSync(f, o.uid, o.gid);
    rmSync(SERIAL_A, { force: true });
    rmSync(dir, { recursive: true, force: true });
  }, 120_000);

  it('two opted-in domains started at once: the hook adds both to the one daemon, both QEMUs connect', async () => {
    expect(existsSync(HOOK)).toBe(true);
    expect(inGroup(QEMU_USER, DAEMON_USER)).toBe(true);
    const t0 = Date.now();
    const [ra, rb] = await Promise.all([virshAsync('start', A), virshAsync('start', B)]);
    console.log(`virsh start of both: ${Date.now() - t0} ms`);
    expect([ra.status, ra.stderr, rb.status, rb.stderr]).toEqual([0, '', 0, '']);
    // The one daemon, unprivileged: vhost-user-balloon, no capability, no supplementary group, seccomp on.
    const id = procIdentity(daemon!.child.pid!);
    expect([id.uids, id.gids, id.groups, id.capEff, id.seccomp]).toEqual([[user.uid, user.uid, user.uid, user.uid], [user.gid, user.gid, user.gid, user.gid], [], 0n, 2]);
    // QEMU sends SET_FEATURES before SET_MEM_TABLE: wait for both, on both VMs.
    const h = await until(hostStatus, (x) => x.devices === 2 && x.connected === 2 && x.totals.guestRamBytes === 2 * GUEST_MIB * MiB,
      240_000, 'two connected VMs with their memory tables');
    expect(h.vms.map((v) => [v.vm, v.socket, v.origin, v.connected])).toEqual([[A, `${RUN}/${A}.sock`, 'control', true], [B, `${RUN}/${B}.sock`, 'control', true]]);
    for (const vm of [A, B]) {
      const s = await vmStatus(vm);
      expect(s.features).toEqual(expect.arrayContaining(['MUST_TELL_HOST', 'STATS_VQ', 'VERSION_1']));
      expect(s.features.includes('PAGE_REPORTING')).toBe(vm === B); // A's config file turned it off
    }
    // The sockets are QEMU's user's; QEMU also has the daemon's group (for the sockets of a restarted daemon).
    const qemuUid = lookupUser(QEMU_USER)!.uid;
    for (const vm of [A, B]) {
      const st = statSync(`${RUN}/${vm}.sock`);
      expect([st.uid, st.gid, (st.mode & 0o777).toString(8)]).toEqual([qemuUid, user.gid, '660']);
      expect(procIdentity(qemuPid(vm)).groups).toContain(user.gid);
    }
    // balloonctl sees the same, through the default control socket.
    const list = balloonctl('list', '--json');
    expect(list.status).toBe(0);
    expect((JSON.parse(list.stdout) as Array<{ name: string; summary: { connected: boolean } }>).map((r) => [r.name, r.summary.connected])).toEqual([[A, true], [B, true]]);
    const text = balloonctl('status');
    expect(text.stdout).toMatch(/2 VMs, 2 connected/);
    console.log(`hook-added VMs: ${JSON.stringify(h.vms.map((v) => ({ vm: v.vm, connected: v.connected, ramMiB: v.guestRamBytes / MiB, pressure: v.pressure })))}`);
  }, 300_000);

  it(`balloonctl set A ${TARGET_MIB}M: A's balloon takes it and A's QEMU gives the memory back; B is untouched`, async () => {
    await until(() => readFileSync(SERIAL_A, 'utf8'), (t) => t.includes(`VUB scenario free:${TOUCH_MIB} done`), 180_000, `A's guest touching and freeing ${TOUCH_MIB} MiB`);
    const pid = qemuPid(A);
    const before = rssShmemMiB(pid);
    // libvirt's own view: QEMU's BALLOON_CHANGE events reach it as the domain's balloon-change events
    // (its dominfo and domstats still show all memory: the domain has no <memballoon> libvirt knows).
    const events = virshAsync('event', '--domain', A, '--event', 'balloon-change', '--loop', '--timeout', '150');
    await sleep(1000);
    const r = balloonctl('set', A, `${TARGET_MIB}M`);
    expect([r.status, r.stderr]).toEqual([0, '']);
    const s = await until(() => vmStatus(A), (x) => x.actualBytes === TARGET_MIB * MiB && x.counters.discardedBytes >= TARGET_MIB * MiB, 120_000, 'A ballooned and discarded');
    const guestKiB = (GUEST_MIB - TARGET_MIB) * 1024;
    await sleep(2000);
    spawnSync('pkill', ['-f', `virsh -c qemu:///system event --domain ${A}`]);
    const ev = await events;
    const seen = [...ev.stdout.matchAll(/balloon-change.*?: (\d+)/g)].map((m) => Number(m[1]));
    console.log(`A: libvirt balloon-change events (KiB): ${seen.join(', ')} [${ev.stdout.trim().split('\n').slice(-2).join(' | ')}] ${ev.stderr}; `
      + `virsh dominfo: ${/Used memory:.*$/m.exec(virsh('dominfo', A).stdout)?.[0]}; domstats: ${virsh('domstats', A, '--balloon').stdout.replace(/\s+/g, ' ')}`);
    expect(seen.at(-1), 'the last balloon-change event libvirt got: guest RAM minus the balloon').toBe(guestKiB);
    expect(s.counters.badInput.discard_failed ?? 0).toBe(0);
    const after = await until(() => rssShmemMiB(pid), (m) => before - m >= TARGET_MIB * 0.5, 30_000, 'QEMU A\'s RssShmem dropping');
    console.log(`A: QEMU RssShmem ${before.toFixed(0)} -> ${after.toFixed(0)} MiB (-${(before - after).toFixed(0)} MiB for a ${TARGET_MIB} MiB balloon); discarded ${s.counters.discardedBytes / MiB} MiB`);
    const b = await vmStatus(B);
    expect([b.targetBytes, b.balloonBytes]).toEqual([0, 0]);
  }, 420_000);

  it('the daemon killed and started again (as Restart=on-failure does): both VMs come back from the state directory, both QEMUs reconnect', async () => {
    const old = daemon!.child.pid;
    await daemon!.stop('SIGKILL', true);
    const t0 = Date.now();
    daemon = await DaemonProcess.startHost([], { VUB_RUN_DIR: RUN }, dir, { as: { uid: user.uid, gid: user.gid }, umask: 0o007 });
    expect(daemon.child.pid).not.toBe(old);
    const h = await until(hostStatus, (x) => x.devices === 2 && x.connected === 2, 60_000, 'both VMs restored and reconnected');
    console.log(`daemon restart: both QEMUs reconnected after ${Date.now() - t0} ms`);
    expect(h.vms.map((v) => v.vm)).toEqual([A, B]);
    // A's manual hold was saved; the balloon is recovered from the guest's actual, nothing deflates.
    const a = await until(() => vmStatus(A), (x) => x.actualBytes === TARGET_MIB * MiB, 30_000, 'A\'s balloon recovered');
    expect([a.targetBytes, a.mode, a.hold?.owner]).toEqual([TARGET_MIB * MiB, 'manual', expect.any(String)]);
  }, 180_000);

  it('libvirtd restarted: the reconnect hook adds a running domain the daemon had lost', async () => {
    const r = balloonctl('remove', B, '--force');
    expect([r.status, r.stderr]).toEqual([0, '']);
    expect((await hostStatus()).vms.map((v) => v.vm)).toEqual([A]);
    stopLibvirtd();
    await startLibvirtd();
    const h = await until(hostStatus, (x) => x.devices === 2 && x.connected === 2, 90_000, 'B added again and reconnected');
    expect(h.vms.map((v) => [v.vm, v.connected])).toEqual([[A, true], [B, true]]);
    expect(virsh('domstate', A).stdout.trim()).toBe('running');
    expect(virsh('domstate', B).stdout.trim()).toBe('running');
  }, 180_000);

  it('virsh save and restore of A (libvirt\'s migration to a file): the balloon comes back with its size, its page set and its hold, and is freed again', async () => {
    const saved = join(dir, `${A}.save`);
    const before = await vmStatus(A);
    expect(before.mode, 'A is held by the balloonctl set above').toBe('manual');
    const t0 = Date.now();
    const sv = virsh('save', A, saved);
    expect([sv.status, sv.stderr]).toEqual([0, '']);
    console.log(`virsh save A: ${Date.now() - t0} ms, ${(statSync(saved).size / MiB).toFixed(0)} MiB file`);
    // The release hook took A out of the daemon; its page set and hold are in the saved device state.
    await until(hostStatus, (x) => x.vms.every((v) => v.vm !== A), 20_000, 'A removed by the release hook');
    const t1 = Date.now();
    const rs = virsh('restore', saved);
    expect([rs.status, rs.stderr]).toEqual([0, '']);
    expect(virsh('domstate', A).stdout.trim()).toBe('running');
    const pid = qemuPid(A);
    const onArrival = rssShmemMiB(pid);
    // The device state carried actual and num_pages, and the daemon's page set: the new daemon frees those pages.
    const a = await until(() => vmStatus(A), (x) => x.connected && x.actualBytes === TARGET_MIB * MiB && x.balloonBytes === TARGET_MIB * MiB
      && x.counters.discardedBytes >= TARGET_MIB * MiB * 0.9, 120_000, 'A\'s balloon back at its size and its pages discarded');
    const settled = await until(() => rssShmemMiB(pid), (m) => onArrival - m >= TARGET_MIB * 0.8, 30_000, 'the restored QEMU\'s RssShmem dropping');
    console.log(`virsh restore A: ${Date.now() - t1} ms; QEMU RssShmem ${onArrival.toFixed(0)} MiB on arrival, ${settled.toFixed(0)} MiB once the balloon was freed`);
    expect([a.targetBytes, a.mode, a.hold?.owner]).toEqual([TARGET_MIB * MiB, 'manual', before.hold?.owner]);
    const q = JSON.parse(virsh('qemu-monitor-command', A, '{"execute":"query-balloon"}').stdout) as { return: { actual: number } };
    expect(q.return.actual).toBe((GUEST_MIB - TARGET_MIB) * MiB);
    // The guest runs on: it answers through the balloon (a deflate it performs) and libvirt sees the change.
    const r = balloonctl('set', A, '0');
    expect([r.status, r.stderr]).toEqual([0, '']);
    await until(() => vmStatus(A), (x) => x.actualBytes === 0 && x.balloonBytes === 0, 120_000, 'A deflated after the restore');
    const q2 = JSON.parse(virsh('qemu-monitor-command', A, '{"execute":"query-balloon"}').stdout) as { return: { actual: number } };
    expect(q2.return.actual).toBe(GUEST_MIB * MiB);
    rmSync(saved);
  }, 420_000);

  it('virsh destroy of both: the release hook removes both VMs and their sockets; the daemon keeps running', async () => {
    const [ra, rb] = await Promise.all([virshAsync('destroy', A), virshAsync('destroy', B)]);
    expect([ra.status, rb.status]).toEqual([0, 0]);
    const h = await until(hostStatus, (x) => x.devices === 0, 20_000, 'both VMs removed');
    expect(h.connected).toBe(0);
    for (const vm of [A, B]) expect(existsSync(`${RUN}/${vm}.sock`)).toBe(false);
    expect(readdirSync(join(dir, 'state')).filter((f) => f.endsWith('.json'))).toEqual([]);
    expect(daemon!.exitCode).toBeNull();
    expect(existsSync(`${RUN}/control.sock`)).toBe(true);
  }, 120_000);

  it('with the daemon stopped, an opted-in domain does not start, and libvirt says how to start the daemon', async () => {
    expect(await daemon!.stop('SIGTERM', true)).toBe(0);
    daemon = undefined;
    const r = virsh('start', A);
    console.log(`virsh start without the daemon: ${r.stderr.trim()}`);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/vhost-user-balloon host daemon is not running/);
    expect(r.stderr).toMatch(/systemctl start vhost-user-balloon/);
    expect(r.stderr).toMatch(/vhost-user-balloon --host/);
    expect(virsh('domstate', A).stdout.trim()).toBe('shut off');
  }, 120_000);

  it('a domain that does not opt in is left alone: it starts without the daemon', async () => {
    const r = virsh('start', PLAIN);
    expect([r.status, r.stderr]).toEqual([0, '']);
    expect(virsh('domstate', PLAIN).stdout.trim()).toBe('running');
    expect(existsSync(`${RUN}/${PLAIN}.sock`)).toBe(false);
    expect(virsh('destroy', PLAIN).status).toBe(0);
  }, 120_000);
});
