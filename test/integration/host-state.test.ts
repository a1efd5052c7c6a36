// What survives a host daemon restart (state directory), the config
// directory at start and on SIGHUP, and shared host pressure.
import { mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { DaemonStatus } from '../../src/control/status.js';
import type { HostStatus } from '../../src/service/host.js';
import { DaemonProcess } from '../sim/daemon.js';
import { sleep } from '../sim/wait.js';
import { SimGuest } from '../sim/driver.js';
import { PAGE } from '../sim/guest-memory.js';
import { SKIP, skipUnlessAll } from '../skip.js';
import { haveV1Memory, isRoot, makeCgroup, MiB, startAllocator, useCgroupRig } from './pressure-helpers.js';

let daemon: DaemonProcess | undefined;
const guests: SimGuest[] = [];

afterEach(async () => {
  for (const g of guests.splice(0)) g.close();
  if (daemon) await daemon.stop();
  daemon = undefined;
});

async function until(cond: () => boolean | Promise<boolean>, ms = 10_000): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await cond()) return true;
    await sleep(50);
  }
  return cond();
}

const vmStatus = (d: DaemonProcess, vm: string) => d.request<DaemonStatus>({ op: 'status', vm });

describe('kill -9 and a restart of the host daemon', () => {
  it('20 simulated guests reattach; each recovers its balloon from actual, and holds, tuning and auto come back from the state directory', async () => {
    daemon = await DaemonProcess.startHost();
    const n = 20;
    for (let i = 0; i < n; i++) {
      const socket = await daemon.addVm(`vm${i}`, { 'stats-interval': 0 });
      guests.push(await SimGuest.start({ socketPath: socket, ramBytes: 32 * MiB }));
    }
    for (let i = 0; i < n; i++) await guests[i]!.inflate(256 * (i + 1));
    await daemon.request({ op: 'set-target', vm: 'vm3', value: `${4 * 256 * 4}K`, owner: 'ops' }); // its 4 MiB, held
    await daemon.request({ op: 'auto', vm: 'vm5', enabled: false });
    await daemon.request({ op: 'tune', vm: 'vm7', params: { stepBytes: 16 * MiB, floorBytes: 8 * MiB } });
    const dir = daemon.dir;
    await daemon.stop('SIGKILL', true);
    expect(readdirSync(join(dir, 'state')).filter((f) => f.endsWith('.json'))).toHaveLength(n);

    daemon = await DaemonProcess.startHost([], {}, dir);
    expect((await daemon.request<HostStatus>({ op: 'host-status' })).devices).toBe(n);
    // QEMU with reconnect= comes back to the running guest and re-sends actual.
    for (const g of guests) g.reconnect();
    expect(await until(async () => (await daemon!.request<HostStatus>({ op: 'host-status' })).connected === n)).toBe(true);
    for (let i = 0; i < n; i++) {
      const s = await vmStatus(daemon, `vm${i}`);
      expect(s.balloonBytes, `vm${i} balloon recovered from actual`).toBe(256 * (i + 1) * PAGE);
    }
    const v3 = await vmStatus(daemon, 'vm3');
    expect([v3.mode, v3.hold?.owner, v3.targetBytes]).toEqual(['manual', 'ops', 4 * MiB]);
    expect((await vmStatus(daemon, 'vm5')).mode).toBe('off');
    const v7 = await vmStatus(daemon, 'vm7');
    expect([v7.params.stepBytes, v7.params.floorBytes]).toEqual([16 * MiB, 8 * MiB]);
    expect((await vmStatus(daemon, 'vm0')).mode).toBe('auto');
    // And every device is driven again.
    await daemon.request({ op: 'set-target', vm: 'vm0', value: '2M' });
    await guests[0]!.followTarget();
    expect((await vmStatus(daemon, 'vm0')).balloonBytes).toBe(2 * MiB);
  }, 120_000);

  it('a corrupt state file is named in the log and moved aside; the other VMs come back and the daemon runs', async () => {
    daemon = await DaemonProcess.startHost();
    await daemon.addVm('good');
    await daemon.addVm('bad');
    const dir = daemon.dir;
    await daemon.stop('SIGKILL', true);
    const file = join(dir, 'state', 'vm-bad.json');
    writeFileSync(file, '{"version": 1, "vm": "bad", "sock');
    daemon = await DaemonProcess.startHost([], {}, dir);
    const err = await daemon.waitForLog((l) => l.level >= 50 && String(l.msg).includes(file));
    expect(String(err.msg)).toMatch(/state file .*vm-bad\.json is unusable \(not JSON.*\); moved to .*vm-bad\.json\.corrupt/);
    expect((await daemon.request<HostStatus>({ op: 'host-status' })).vms.map((v) => v.vm)).toEqual(['good']);
    expect(readFileSync(`${file}.corrupt`, 'utf8')).toContain('"sock');
    // A restart after that is clean: no crash loop on the same file.
    await daemon.stop('SIGTERM', true);
    daemon = await DaemonProcess.startHost([], {}, dir);
    expect(daemon.find((l) => l.level >= 50)).toEqual([]);
  });

  it('state files are replaced whole (written aside, then renamed: no temporary file left), mode 0600 in a 0700 directory', async () => {
    daemon = await DaemonProcess.startHost();
    await daemon.addVm('vm1');
    for (let i = 0; i < 20; i++) await daemon.request({ op: 'set-target', vm: 'vm1', value: `${i + 1}M`, owner: 'ops' });
    const files = readdirSync(join(daemon.dir, 'state'));
    expect(files).toEqual(['vm-vm1.json']);
    const saved = JSON.parse(readFileSync(join(daemon.dir, 'state', 'vm-vm1.json'), 'utf8'));
    expect(saved.runtime.hold).toEqual({ owner: 'ops', targetBytes: 20 * MiB });
    expect(statSync(join(daemon.dir, 'state', 'vm-vm1.json')).mode & 0o777).toBe(0o600);
    expect(statSync(join(daemon.dir, 'state')).mode & 0o777).toBe(0o700);
  });
});

describe('the config directory', () => {
  const conf = (d: string, vm: string, o: Record<string, unknown>) => writeFileSync(join(d, 'conf', `${vm}.json`), JSON.stringify(o));

  it('is loaded at start; SIGHUP adds, removes and applies changes, logging every outcome', async () => {
    const dir = join('/tmp', `vub-confdir-${process.pid}`);
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(join(dir, 'conf'), { recursive: true });
    conf(dir, 'a', { pressure: 'none', step: '16M' });
    conf(dir, 'b', { pressure: 'none' });
    writeFileSync(join(dir, 'conf', 'broken.json'), '{ nope');
    daemon = await DaemonProcess.startHost([], {}, dir);
    let host = await daemon.request<HostStatus>({ op: 'host-status' });
    expect(host.vms.map((v) => [v.vm, v.origin])).toEqual([['a', 'config-dir'], ['b', 'config-dir']]);
    expect(daemon.find((l) => l.level >= 50 && String(l.msg).includes('broken.json'))).toHaveLength(1);
    expect((await vmStatus(daemon, 'a')).params.stepBytes).toBe(16 * MiB);

    const gb = await SimGuest.start({ socketPath: join(dir, 'run', 'b.sock'), ramBytes: 32 * MiB });
    guests.push(gb);
    conf(dir, 'a', { pressure: 'none', step: '64M' });       // a policy change: applied at once
    rmSync(join(dir, 'conf', 'b.json'));                    // b has a frontend: kept, with a warning
    conf(dir, 'c', { pressure: 'none' });                     // new
    daemon.child.kill('SIGHUP');
    const done = await daemon.waitForLog((l) => l.msg === 'config directory reloaded');
    expect(done).toMatchObject({ added: ['c'], removed: [], changed: ['a'], kept: ['b'] });
    expect(daemon.find((l) => l.msg.includes('VM b kept although its config file is gone'))).toHaveLength(1);
    expect((await vmStatus(daemon, 'a')).params.stepBytes).toBe(64 * MiB);
    host = await daemon.request<HostStatus>({ op: 'host-status' });
    expect(host.vms.map((v) => v.vm)).toEqual(['a', 'b', 'c']);

    gb.close();
    guests.splice(0);
    await daemon.waitForLog((l) => l.msg === 'frontend disconnected');
    const r = await daemon.request<{ removed: string[] }>({ op: 'reload' });
    expect(r.removed).toEqual(['b']);
    expect((await daemon.request<HostStatus>({ op: 'host-status' })).vms.map((v) => v.vm)).toEqual(['a', 'c']);
    await daemon.stop();
    daemon = undefined;
    rmSync(dir, { recursive: true, force: true });
  });
});

skipUnlessAll([isRoot, SKIP.notRoot], [haveV1Memory, SKIP.noV1Memory]).describe('shared host pressure', () => {
  const rig = useCgroupRig();

  it('VMs that watch the same memcg share one registration, and each event reaches every VM', async () => {
    const cg = makeCgroup({ limitBytes: 64 * MiB });
    rig.cgroups.push(cg);
    daemon = await DaemonProcess.startHost();
    for (const vm of ['p', 'q', 'r']) await daemon.addVm(vm, { pressure: 'vmpressure', memcg: cg.v1, 'stats-interval': 0 });
    await daemon.addVm('other', { pressure: 'none' });
    const host = await daemon.request<HostStatus>({ op: 'host-status' });
    expect(host.pressure).toEqual([expect.objectContaining({ subscribers: 3, description: expect.stringContaining(cg.v1) })]);
    // One eventfd registered with the memcg, whatever the number of VMs.
    const eventfds = daemon.fds().filter((f) => f === 'anon_inode:[eventfd]').length;
    await daemon.addVm('s', { pressure: 'vmpressure', memcg: cg.v1 });
    expect(daemon.fds().filter((f) => f === 'anon_inode:[eventfd]').length).toBe(eventfds);
    const a = startAllocator([cg.v1], 200, 10_000);
    rig.allocators.push(a);
    expect(await until(async () => {
      const counts = await Promise.all(['p', 'q', 'r', 's'].map(async (vm) => (await vmStatus(daemon!, vm)).pressure.host.events));
      return counts.every((c) => c > 0);
    }, 20_000)).toBe(true);
    await a.kill();
    await sleep(1000); // the last events delivered
    const counts = await Promise.all(['p', 'q', 'r', 's'].map(async (vm) => (await vmStatus(daemon!, vm)).pressure.host.events));
    expect(new Set(counts).size, `every VM saw the same events: ${counts}`).toBe(1);
    expect((await vmStatus(daemon, 'other')).pressure.host.events).toBe(0);
    await daemon.request({ op: 'remove', vm: 'p' });
    expect((await daemon.request<HostStatus>({ op: 'host-status' })).pressure[0]!.subscribers).toBe(3);
  }, 60_000);
});
