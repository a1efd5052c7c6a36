// The libvirt hook (dist/src/hook/main.js, as libvirtd runs it: domain XML on
// stdin, the operation in argv) against a real host daemon running as the
// unprivileged vhost-user-balloon user, without libvirt or QEMU (the real
// libvirtd and QEMU are test/libvirt/). prepare adds the VM and hands the
// socket to QEMU's user; a VM the daemon already has on the same socket is
// success; release removes it; the daemon not running, not answering, or
// refusing the VM is a message that says what to do, within the hook's time
// limits; reconnect never fails; other domains and operations are left alone.
import { spawn } from 'node:child_process';
import { chownSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { HostStatus } from '../../src/service/host.js';
import type { UserIdentity } from '../../src/host/privileges.js';
import { QEMU_XML_NS, VUB_XML_NS } from '../../src/hook/domain.js';
import { parseDeviceOptions } from '../../src/options/device.js';
import { DaemonProcess } from '../sim/daemon.js';
import { SimGuest } from '../sim/driver.js';
import { haveV1Memory, isRoot, V1_MEMORY } from './pressure-helpers.js';
import { ensureDaemonUser } from './privilege-helpers.js';
import { SKIP, skipUnless } from '../skip.js';

const HOOK_JS = join(import.meta.dirname, '..', '..', 'dist', 'src', 'hook', 'main.js');
const QEMU_UID = 64055;
const QEMU_GID = 106;
const MiB = 2 ** 20;

interface HookResult { status: number | null; stdout: string; stderr: string; ms: number }

/** Runs the hook as libvirtd does, with the daemon's run directory. */
function hook(runDir: string, args: string[], xml: string): Promise<HookResult> {
  return new Promise((resolve) => {
    const t0 = performance.now();
    const c = spawn(process.execPath, [HOOK_JS, ...args], { env: { ...process.env, VUB_RUN_DIR: runDir }, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    c.stdout.setEncoding('utf8').on('data', (d: string) => { stdout += d; });
    c.stderr.setEncoding('utf8').on('data', (d: string) => { stderr += d; });
    c.stdin.on('error', () => { /* the hook may not read stdin */ });
    c.stdin.end(xml);
    c.once('exit', (status) => resolve({ status, stdout, stderr, ms: performance.now() - t0 }));
  });
}

/** A domain as libvirt passes it at prepare (with a DAC label, as after a previous start). */
function domain(name: string, o: { socket?: string; chardevPath?: string; config?: string; optIn?: boolean } = {}): string {
  const attrs = `${o.socket ? ` socket='${o.socket}'` : ''}${o.config ? ` config='${o.config}'` : ''}`;
  const path = o.chardevPath ?? o.socket;
  return `<domain type='qemu' xmlns:qemu='${QEMU_XML_NS}'><name>${name}</name>`
    + (o.optIn === false ? '' : `<metadata><vub:balloon xmlns:vub='${VUB_XML_NS}'${attrs}/></metadata>`)
    + `<devices><memballoon model='none'/></devices>`
    + `<seclabel type='dynamic' model='dac' relabel='yes'><label>+${QEMU_UID}:+${QEMU_GID}</label></seclabel>`
    + (path ? `<qemu:commandline><qemu:arg value='-chardev'/><qemu:arg value='socket,id=vub0,path=${path},reconnect=1'/>`
      + `<qemu:arg value='-device'/><qemu:arg value='{"driver":"vhost-user-balloon","chardev":"vub0"}'/></qemu:commandline>` : '')
    + '</domain>';
}

describe('examples', () => {
  it('examples/config/vm1.json is a per-VM config (config directory, <vub:balloon config=>, balloonctl add --config): no daemon-wide option in it', () => {
    const example = JSON.parse(readFileSync(join(import.meta.dirname, '..', '..', 'examples', 'config', 'vm1.json'), 'utf8')) as Record<string, unknown>;
    expect(parseDeviceOptions(example, 'examples/config/vm1.json').params.floorBytes).toBe(512 * MiB);
  });
});

skipUnless(isRoot, SKIP.notRoot).describe('libvirt hook and the host daemon', () => {
  let user: UserIdentity;
  let daemon: DaemonProcess;
  let run: string;
  let noPressure: string;
  const guests: SimGuest[] = [];
  const sock = (vm: string) => join(run, `${vm}.sock`);
  // The default options' pressure file (the root memcg's, on cgroup v1): these tests must leave it alone.
  const rootEvents = V1_MEMORY ? join(V1_MEMORY, 'cgroup.event_control') : null;
  let rootEventsOwner: { uid: number; gid: number } | null = null;
  const vms = async () => (await daemon.request<HostStatus>({ op: 'host-status' })).vms;

  beforeAll(async () => {
    user = ensureDaemonUser();
    if (rootEvents && existsSync(rootEvents)) rootEventsOwner = { uid: statSync(rootEvents).uid, gid: statSync(rootEvents).gid };
    const dir = mkdtempSync('/tmp/vub-hook-');
    // A VM of the daemon's own config directory, and config files the domains name.
    mkdirSync(join(dir, 'conf'));
    writeFileSync(join(dir, 'conf', 'fromdir.json'), JSON.stringify({ pressure: 'none' }));
    noPressure = join(dir, 'no-pressure.json');
    writeFileSync(noPressure, JSON.stringify({ pressure: 'none', 'stats-interval': 0 }));
    writeFileSync(join(dir, 'typo.json'), JSON.stringify({ pressure: 'none', stepp: '32M' }));
    // As the unit runs it: its user, UMask=0007.
    daemon = await DaemonProcess.startHost([], {}, dir, { as: { uid: user.uid, gid: user.gid }, umask: 0o007 });
    run = join(dir, 'run');
  });

  afterAll(async () => {
    for (const g of guests) g.close();
    await daemon?.stop();
    if (rootEventsOwner) chownSync(rootEvents!, rootEventsOwner.uid, rootEventsOwner.gid);
  });

  it('prepare adds the VM; the socket is QEMU\'s user\'s, the group stays the daemon\'s (rw); stdout stays empty', async () => {
    const r = await hook(run, ['vm1', 'prepare', 'begin', '-'], domain('vm1', { socket: sock('vm1'), config: noPressure }));
    expect(r.stderr).toMatch(/added vm1 on .*vm1\.sock \(QEMU's uid 64055 may connect\)/);
    expect([r.status, r.stdout]).toEqual([0, '']);
    const st = statSync(sock('vm1'));
    expect([st.isSocket(), st.uid, st.gid, (st.mode & 0o777).toString(8)]).toEqual([true, QEMU_UID, user.gid, '660']);
    expect((await vms()).map((v) => [v.vm, v.socket, v.origin])).toContainEqual(['vm1', sock('vm1'), 'control']);
    console.log(`hook prepare (add): ${r.ms.toFixed(0)} ms`);
  });

  it('prepare again (a VM the daemon already has on the same socket) succeeds and changes nothing', async () => {
    const before = statSync(sock('vm1')).ino;
    const r = await hook(run, ['vm1', 'prepare', 'begin', '-'], domain('vm1', { socket: sock('vm1'), config: noPressure }));
    expect(r.status).toBe(0);
    expect(r.stderr).toMatch(/already served: vm1/);
    expect(statSync(sock('vm1')).ino).toBe(before);
    expect((await vms()).filter((v) => v.vm === 'vm1')).toHaveLength(1);
  });

  it('prepare while another frontend holds the socket fails; reconnect (libvirtd restarted) accepts it', async () => {
    const g = await SimGuest.start({ socketPath: sock('vm1'), ramBytes: 16 * MiB });
    guests.push(g);
    const xml = domain('vm1', { socket: sock('vm1'), config: noPressure });
    const r = await hook(run, ['vm1', 'prepare', 'begin', '-'], xml);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/vm1\.sock already has a frontend attached, but domain vm1 is only starting[\s\S]*hint: another QEMU/);
    const rc = await hook(run, ['vm1', 'reconnect', 'begin', '-'], xml);
    expect([rc.status, rc.stderr]).toEqual([0, '']);
    guests.splice(0).forEach((x) => x.close());
  });

  it('prepare with another socket than the daemon has for the VM fails, naming both', async () => {
    const other = join(run, 'elsewhere.sock');
    const r = await hook(run, ['vm1', 'prepare', 'begin', '-'], domain('vm1', { socket: other, config: noPressure }));
    expect(r.status).toBe(1);
    expect(r.stderr).toContain(`serves vm1 on ${sock('vm1')}, but the domain uses ${other}`);
    expect(r.stderr).toMatch(/balloonctl remove vm1/);
  });

  it('a chardev path that is not the balloon socket fails before the daemon is asked', async () => {
    const r = await hook(run, ['vm2', 'prepare', 'begin', '-'], domain('vm2', { socket: sock('vm2'), chardevPath: '/run/typo.sock', config: noPressure }));
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/chardev "vub0" connects QEMU to \/run\/typo\.sock, but the balloon socket is .*vm2\.sock[\s\S]*make them the same/);
    expect((await vms()).map((v) => v.vm)).not.toContain('vm2');
  });

  it.each<[string, () => string, RegExp]>([
    ['an unknown key in the config file', () => domain('vm3', { socket: sock('vm3'), config: join(daemon.dir, 'typo.json') }),
      /the host daemon cannot serve vm3: config file .*typo\.json: unknown option "stepp"[\s\S]*did you mean "step"/],
    ['a config file that does not exist', () => domain('vm3', { socket: sock('vm3'), config: '/nonexistent/vm3.json' }),
      /config file \/nonexistent\/vm3\.json named in <vub:balloon config=\.\.\.> does not exist/],
    ['a relative socket path', () => domain('vm3', { socket: 'vm3.sock' }), /socket='vm3\.sock'> is not an absolute path/],
    ['a socket in a directory that does not exist', () => domain('vm3', { socket: '/nonexistent/vm3.sock', config: noPressure }),
      /cannot serve vm3: cannot listen on \/nonexistent\/vm3\.sock[\s\S]*hint:/],
    ['a domain name that cannot be a file name', () => domain('a b', { config: noPressure }), /domain name "a b" cannot name a balloon device/],
  ])('prepare refuses %s with what to do; the daemon goes on', async (_name, xml, message) => {
    const r = await hook(run, ['vm3', 'prepare', 'begin', '-'], xml());
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(message);
    expect((await vms()).map((v) => v.vm)).not.toContain('vm3');
    expect(daemon.exitCode).toBeNull();
  });

  it('a VM of the daemon\'s config directory: prepare finds it, release keeps it', async () => {
    const xml = domain('fromdir', { socket: sock('fromdir') });
    const p = await hook(run, ['fromdir', 'prepare', 'begin', '-'], xml);
    expect([p.status, p.stderr]).toEqual([0, expect.stringMatching(/already served: fromdir/)]);
    const r = await hook(run, ['fromdir', 'release', 'end', 'destroyed'], xml);
    expect(r.status).toBe(0);
    expect(r.stderr).toMatch(/kept in the daemon: it comes from the daemon's config directory/);
    expect((await vms()).find((v) => v.vm === 'fromdir')?.origin).toBe('config-dir');
    // The daemon had it: nothing granted for it (its files are the unit's ExecStartPre= grant's).
    if (rootEventsOwner) expect(statSync(rootEvents!).uid).toBe(rootEventsOwner.uid);
  });

  it('release removes the VM (forced) and its socket; a second release logs that there is nothing to do', async () => {
    const g = await SimGuest.start({ socketPath: sock('vm1'), ramBytes: 16 * MiB }); // QEMU not gone yet, say: forced anyway
    guests.push(g);
    const xml = domain('vm1', { socket: sock('vm1'), config: noPressure });
    const r = await hook(run, ['vm1', 'release', 'end', 'destroyed'], xml);
    expect([r.status, r.stderr]).toEqual([0, 'vhost-user-balloon: vm1 stopped (destroyed): removed from the host daemon\n']);
    expect(existsSync(sock('vm1'))).toBe(false);
    expect((await vms()).map((v) => v.vm)).not.toContain('vm1');
    const again = await hook(run, ['vm1', 'release', 'end', 'destroyed'], xml);
    expect(again.status).toBe(0);
    expect(again.stderr).toMatch(/does not serve it \(removed already\?\): nothing to do/);
    guests.splice(0).forEach((x) => x.close());
  });

  it('reconnect adds a running domain the daemon lost, and hands its socket to QEMU\'s user', async () => {
    const r = await hook(run, ['vm4', 'reconnect', 'begin', '-'], domain('vm4', { socket: sock('vm4'), config: noPressure }));
    expect(r.status).toBe(0);
    expect(r.stderr).toMatch(/vm4 runs and the host daemon had lost it: added again/);
    expect(statSync(sock('vm4')).uid).toBe(QEMU_UID);
  });

  skipUnless(haveV1Memory, SKIP.noV1Memory).it('prepare gives the daemon\'s user the cgroup file of the VM\'s pressure source first', async () => {
    const memcg = join(V1_MEMORY!, `vub-hook-${process.pid}`);
    mkdirSync(memcg);
    try {
      const cfg = join(daemon.dir, 'memcg.json');
      writeFileSync(cfg, JSON.stringify({ pressure: 'vmpressure', memcg }));
      expect(statSync(join(memcg, 'cgroup.event_control')).uid).toBe(0);
      const xml = domain('vm5', { socket: sock('vm5'), config: cfg });
      const r = await hook(run, ['vm5', 'prepare', 'begin', '-'], xml);
      expect(r.stderr).toContain(`chowned ${memcg}/cgroup.event_control to ${user.name} (write), for vm5's pressure source`);
      expect(r.status).toBe(0);
      expect(statSync(join(memcg, 'cgroup.event_control')).uid).toBe(user.uid);
      expect((await vms()).find((v) => v.vm === 'vm5')?.pressure).toBe(`vmpressure low on ${memcg}`);
      expect((await hook(run, ['vm5', 'release', 'end', 'shutdown'], xml)).status).toBe(0);
    } finally {
      rmdirSync(memcg);
    }
  });

  it('migrate (on the destination, before the incoming QEMU): the daemon serves the VM first, prepare then finds it; stdout stays empty', async () => {
    // libvirt takes the migrate hook's stdout as the new XML: empty keeps it as it is.
    const xml = domain('vm7', { socket: sock('vm7'), config: noPressure });
    const mig = await hook(run, ['vm7', 'migrate', 'begin', '-'], xml);
    expect([mig.status, mig.stdout]).toEqual([0, '']);
    expect(mig.stderr).toMatch(/incoming migration: added vm7 on .*vm7\.sock \(QEMU's uid 64055 may connect\)/);
    expect((await vms()).map((v) => [v.vm, v.socket])).toContainEqual(['vm7', sock('vm7')]);
    const st = statSync(sock('vm7'));
    expect([st.isSocket(), st.uid]).toEqual([true, QEMU_UID]);
    // The incoming QEMU connects: the daemon has a frontend for vm7.
    const g = await SimGuest.start({ socketPath: sock('vm7'), ramBytes: 16 * MiB });
    guests.push(g);
    const p = await hook(run, ['vm7', 'prepare', 'begin', '-'], xml);
    expect(p.status).toBe(1); // prepare of a domain whose socket has a frontend: refused, as for any start
    guests.splice(0).forEach((x) => x.close());
    const p2 = await hook(run, ['vm7', 'prepare', 'begin', '-'], xml);
    expect([p2.status, p2.stderr]).toEqual([0, expect.stringMatching(/already served: vm7/)]);
    await hook(run, ['vm7', 'release', 'end', '-'], xml);
  });

  it('migrate with a clash on the destination (its daemon serves that VM on another socket): refused, naming both', async () => {
    const served = domain('vm8', { socket: sock('vm8'), config: noPressure });
    expect((await hook(run, ['vm8', 'prepare', 'begin', '-'], served)).status).toBe(0);
    const mig = await hook(run, ['vm8', 'migrate', 'begin', '-'], domain('vm8', { socket: sock('vm8-other'), config: noPressure }));
    expect([mig.status, mig.stdout]).toEqual([1, '']);
    expect(mig.stderr).toMatch(/incoming migration of vm8 refused on this host: the host daemon serves vm8 on .*vm8\.sock, but the domain uses .*vm8-other\.sock/);
    await hook(run, ['vm8', 'release', 'end', '-'], served);
  });

  it('other domains and other operations: exit 0, no output, the daemon untouched', async () => {
    const before = (await vms()).map((v) => v.vm);
    const plain = await hook(run, ['plain', 'prepare', 'begin', '-'], domain('plain', { optIn: false }));
    expect([plain.status, plain.stdout, plain.stderr]).toEqual([0, '', '']);
    const mig = await hook(run, ['plain', 'migrate', 'begin', '-'], domain('plain', { optIn: false }));
    expect([mig.status, mig.stdout, mig.stderr]).toEqual([0, '', '']);
    for (const op of ['start', 'started', 'stopped', 'restore', 'attach']) {
      const r = await hook(run, ['vm6', op, 'begin', '-'], 'not even XML');
      expect([op, r.status, r.stdout, r.stderr]).toEqual([op, 0, '', '']);
    }
    expect((await vms()).map((v) => v.vm)).toEqual(before);
    const usage = await hook(run, [], '');
    expect([usage.status, usage.stderr]).toEqual([2, expect.stringMatching(/^usage: /)]);
  });
});

skipUnless(isRoot, SKIP.notRoot).describe('libvirt hook without a (working) host daemon', () => {
  let dir: string;
  let silent: Server | undefined;

  beforeAll(() => {
    dir = mkdtempSync('/tmp/vub-hook-none-');
  });

  afterAll(async () => {
    if (silent) await new Promise((r) => silent!.close(r));
    rmSync(dir, { recursive: true, force: true });
  });

  it('prepare and migrate fail and say how to start the daemon; release and reconnect exit 0', async () => {
    const xml = domain('vm1', { socket: join(dir, 'vm1.sock') });
    const p = await hook(dir, ['vm1', 'prepare', 'begin', '-'], xml);
    expect(p.status).toBe(1);
    expect(p.stderr).toMatch(/the vhost-user-balloon host daemon is not running \(no .*control\.sock\)/);
    expect(p.stderr).toMatch(/systemctl start vhost-user-balloon/);
    expect(p.stderr).toMatch(/vhost-user-balloon --host/);
    const r = await hook(dir, ['vm1', 'release', 'end', 'destroyed'], xml);
    expect([r.status, r.stderr]).toEqual([0, expect.stringMatching(/the host daemon is not running, nothing to remove/)]);
    const c = await hook(dir, ['vm1', 'reconnect', 'begin', '-'], xml);
    expect([c.status, c.stderr]).toEqual([0, expect.stringMatching(/host daemon is not running[\s\S]*QEMU reconnects once the daemon serves/)]);
    // On a migration's destination: refused before the incoming QEMU starts, saying why and what to do.
    const m = await hook(dir, ['vm1', 'migrate', 'begin', '-'], xml);
    expect([m.status, m.stdout]).toEqual([1, '']);
    expect(m.stderr).toMatch(/incoming migration of vm1 refused on this host: the vhost-user-balloon host daemon is not running[\s\S]*systemctl start vhost-user-balloon/);
    console.log(`hook prepare without a daemon: failed in ${p.ms.toFixed(0)} ms`);
  });

  it('a daemon that accepts but never answers: prepare fails within the hook\'s time limit (connect 2 s + request 5 s)', async () => {
    silent = createServer((s) => s.resume()); // reads, never answers
    await new Promise<void>((r) => silent!.listen(join(dir, 'control.sock'), r));
    const p = await hook(dir, ['vm1', 'prepare', 'begin', '-'], domain('vm1', { socket: join(dir, 'vm1.sock') }));
    expect(p.status).toBe(1);
    expect(p.stderr).toMatch(/did not answer "list" within 5000 ms[\s\S]*systemctl status vhost-user-balloon/);
    expect(p.ms).toBeGreaterThan(4_900);
    expect(p.ms).toBeLessThan(7_500);
    console.log(`hook prepare against a silent daemon: failed after ${p.ms.toFixed(0)} ms`);
  }, 20_000);
});
