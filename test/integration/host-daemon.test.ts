// The host daemon (--host): VMs added and removed at run time through the
// control socket, each with its own vhost-user socket and simulated guest,
// host totals, and operator mistakes answered with what to do.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { scrapeUnix } from '../../bench/device/prom.js';
import { ControlClient } from '../../src/control/client.js';
import type { DaemonStatus } from '../../src/control/status.js';
import type { HostStatus } from '../../src/service/host.js';
import { DaemonProcess } from '../sim/daemon.js';
import { SimGuest } from '../sim/driver.js';
import { PAGE } from '../sim/guest-memory.js';

const MiB = 1 << 20;
const BALLOONCTL = join(import.meta.dirname, '..', '..', 'dist', 'src', 'cli', 'balloonctl.js');
let daemon: DaemonProcess | undefined;
const guests: SimGuest[] = [];

afterEach(async () => {
  for (const g of guests.splice(0)) g.close();
  if (daemon) expect(await daemon.stop(), 'daemon exits cleanly').toBe(0);
  daemon = undefined;
});

const balloonctl = (d: DaemonProcess, args: string[]) => spawnSync(process.execPath, [BALLOONCTL, ...args], {
  encoding: 'utf8', env: { ...process.env, VUB_RUN_DIR: join(d.dir, 'run') }, timeout: 15_000,
});

async function guest(socketPath: string, ramBytes = 64 * MiB): Promise<SimGuest> {
  const g = await SimGuest.start({ socketPath, ramBytes });
  guests.push(g);
  return g;
}

describe('a host daemon serving several VMs', () => {
  it('starts with no VM; balloonctl add creates each VM\'s socket and prints it; each guest balloons on its own', async () => {
    daemon = await DaemonProcess.startHost();
    expect((await daemon.request<HostStatus>({ op: 'host-status' })).devices).toBe(0);
    const add = balloonctl(daemon, ['add', 'vm1', '--pressure', 'none', '--stats-interval', '0']);
    expect(add.stderr).toBe('');
    expect(add.stdout.trim()).toBe(join(daemon.dir, 'run', 'vm1.sock'));
    const s2 = await daemon.addVm('vm2', { 'stats-interval': 0 });
    const g1 = await guest(add.stdout.trim());
    const g2 = await guest(s2);
    await g1.inflate(1024);
    await g2.inflate(256);
    const st1 = await daemon.request<DaemonStatus>({ op: 'status', vm: 'vm1' });
    const st2 = await daemon.request<DaemonStatus>({ op: 'status', vm: 'vm2' });
    expect([st1.vm, st1.balloonBytes, st2.vm, st2.balloonBytes]).toEqual(['vm1', 1024 * PAGE, 'vm2', 256 * PAGE]);
    const host = await daemon.request<HostStatus>({ op: 'host-status' });
    expect(host).toMatchObject({ mode: 'host', devices: 2, connected: 2, totals: { balloonBytes: 1280 * PAGE, guestRamBytes: 128 * MiB } });
    const text = balloonctl(daemon, ['status']);
    expect(text.stdout).toMatch(/2 VMs, 2 connected/);
    expect(text.stdout).toMatch(/vm1 .* connected/);
    const list = balloonctl(daemon, ['list', '--json']);
    expect(JSON.parse(list.stdout).map((r: { name: string }) => r.name)).toEqual(['vm1', 'vm2']);
  });

  it('balloonctl set/auto/tune/history reach the VM they name, and only it', async () => {
    daemon = await DaemonProcess.startHost();
    const s1 = await daemon.addVm('a', { 'stats-interval': 0 });
    await daemon.addVm('b', { 'stats-interval': 0 });
    const g = await guest(s1);
    expect(balloonctl(daemon, ['set', 'a', '8M']).status).toBe(0);
    await g.followTarget();
    expect(balloonctl(daemon, ['auto', 'b', 'off']).status).toBe(0);
    expect(balloonctl(daemon, ['tune', 'b', '--step', '16M']).status).toBe(0);
    const a = await daemon.request<DaemonStatus>({ op: 'status', vm: 'a' });
    const b = await daemon.request<DaemonStatus>({ op: 'status', vm: 'b' });
    expect([a.mode, a.targetBytes, a.balloonBytes, a.params.stepBytes]).toEqual(['manual', 8 * MiB, 8 * MiB, 32 * MiB]);
    expect([b.mode, b.targetBytes, b.params.stepBytes]).toEqual(['off', 0, 16 * MiB]);
    const hist = JSON.parse(balloonctl(daemon, ['history', 'a', '--json']).stdout) as { decisions: Array<{ rule: string }> };
    expect(hist.decisions.map((d) => d.rule)).toContain('manual-target');
  });

  it('remove refuses while a frontend is attached, and goes with --force; the socket goes with the VM', async () => {
    daemon = await DaemonProcess.startHost();
    const s = await daemon.addVm('vm1');
    const g = await guest(s);
    await g.inflate(16);
    const refused = balloonctl(daemon, ['remove', 'vm1']);
    expect(refused.status).toBe(1);
    expect(refused.stderr).toMatch(/vm1 has a frontend \(QEMU\) attached[\s\S]*--force/);
    expect(existsSync(s)).toBe(true);
    const forced = balloonctl(daemon, ['remove', 'vm1', '--force']);
    expect(forced.status).toBe(0);
    expect(existsSync(s)).toBe(false);
    expect((await daemon.request<HostStatus>({ op: 'host-status' })).devices).toBe(0);
    await daemon.waitForLog((l) => l.msg === 'frontend disconnected');
  });
});

describe('watch and metrics across VMs', () => {
  it('watch VM streams that VM\'s events only; watch without a VM streams every VM\'s, with its name, and VMs coming and going', async () => {
    daemon = await DaemonProcess.startHost();
    await daemon.addVm('a');
    await daemon.addVm('b');
    const one = await ControlClient.connect(daemon.controlPath);
    const all = await ControlClient.connect(daemon.controlPath);
    const gotOne: Array<Record<string, unknown>> = [];
    const gotAll: Array<Record<string, unknown>> = [];
    await one.watch((e) => gotOne.push(e as Record<string, unknown>), 'a');
    await all.watch((e) => gotAll.push(e as Record<string, unknown>));
    await daemon.request({ op: 'set-target', vm: 'a', value: '4M' });
    await daemon.request({ op: 'set-target', vm: 'b', value: '8M' });
    await daemon.addVm('c');
    await new Promise((r) => setTimeout(r, 200));
    one.close();
    all.close();
    expect(gotOne.length).toBeGreaterThan(0);
    expect(gotOne.every((e) => e.vm === 'a')).toBe(true);
    expect(new Set(gotAll.filter((e) => e.type === 'decision').map((e) => e.vm))).toEqual(new Set(['a', 'b']));
    expect(gotAll.some((e) => e.type === 'vm-added' && e.vm === 'c')).toBe(true);
  });

  it('one metrics endpoint: every VM\'s series carry its name', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vub-hostm-'));
    const sock = join(dir, 'metrics.sock');
    daemon = await DaemonProcess.startHost(['--metrics-listen', `unix:${sock}`]);
    const g1 = await guest(await daemon.addVm('m1', { 'stats-interval': 0 }));
    const g2 = await guest(await daemon.addVm('m2', { 'stats-interval': 0 }));
    await g1.inflate(512);
    await g2.inflate(256);
    const text = await scrapeUnix(sock);
    expect(text).toContain(`vub_balloon_bytes{vm="m1"} ${512 * PAGE}`);
    expect(text).toContain(`vub_balloon_bytes{vm="m2"} ${256 * PAGE}`);
    expect(text).toContain('vub_devices 2');
    rmSync(dir, { recursive: true, force: true });
  });
});

describe('operator mistakes get a message that says what to do; the daemon carries on', () => {
  it.each<[string, (d: DaemonProcess) => string[], RegExp]>([
    ['adding a VM twice', () => ['add', 'vm1', '--pressure', 'none'], /VM vm1 is already served[\s\S]*balloonctl remove vm1 first/],
    ['removing an unknown VM', () => ['remove', 'nope'], /no VM nope in this daemon[\s\S]*VMs here: vm1/],
    ['a status for an unknown VM', () => ['status', 'nope'], /no VM nope[\s\S]*VMs here: vm1/],
    ['an unknown option in a config file', (d) => ['add', 'vm2', '--config', join(d.dir, 'bad.json')], /unknown option "stepp"[\s\S]*did you mean "step"/],
    ['a bad value', () => ['add', 'vm2', '--step', 'lots'], /--step lots/],
    ['a mistyped option', () => ['add', 'vm2', '--stepp', '64M'], /Unknown argument: stepp[\s\S]*did you mean --step\?/],
    ['a socket path in use by another VM', (d) => ['add', 'vm2', '--socket', join(d.dir, 'run', 'vm1.sock'), '--pressure', 'none'], /socket .*vm1\.sock is VM vm1's/],
    ['a socket path in a directory that does not exist', () => ['add', 'vm3', '--socket', '/nonexistent-dir/vm3.sock', '--pressure', 'none'], /cannot listen on \/nonexistent-dir\/vm3\.sock/],
    ['a VM name that cannot be a file name', () => ['add', '../etc', '--pressure', 'none'], /needs "vm": a VM name \(letters/],
  ])('%s', async (_name, args, message) => {
    daemon ??= await DaemonProcess.startHost();
    if (!(await daemon.request<HostStatus>({ op: 'host-status' })).vms.some((v) => v.vm === 'vm1')) await daemon.addVm('vm1');
    writeFileSync(join(daemon.dir, 'bad.json'), JSON.stringify({ stepp: '32M' }));
    const r = balloonctl(daemon, args(daemon));
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(message);
    const host = await daemon.request<HostStatus>({ op: 'host-status' });
    expect(host.vms.map((v) => v.vm)).toEqual(['vm1']);
    expect(daemon.exitCode).toBeNull();
  });
});
