// The systemd unit of the host daemon (examples/systemd/vhost-user-balloon.service):
// `systemd-analyze verify` is clean, it runs `vhost-user-balloon --host` as
// vhost-user-balloon with its hardening, its directories are the daemon's
// defaults, the sysusers.d file creates that user, and every system call of
// a host-daemon run (VMs from the config directory and from the control
// socket, a reload, a removal, guests ballooning) passes the unit's
// SystemCallFilter= as systemd expands it. There is no systemd as PID 1 on
// these machines, so the unit itself cannot be started: these are the checks
// that can be made without it.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { SKIP, skipUnless } from '../skip.js';
import { ControlClient } from '../../src/control/client.js';
import type { DaemonStatus } from '../../src/control/status.js';
import { configDir, hostControlSocket, stateDir } from '../../src/paths.js';
import type { HostStatus } from '../../src/service/host.js';
import { DAEMON_JS } from '../sim/daemon.js';
import { SimGuest } from '../sim/driver.js';
import { PAGE } from '../sim/guest-memory.js';

const ROOT = join(import.meta.dirname, '..', '..');
const UNIT = join(ROOT, 'examples', 'systemd', 'vhost-user-balloon.service');
const SYSUSERS = join(ROOT, 'examples', 'systemd', 'vhost-user-balloon.sysusers.conf');
const MiB = 2 ** 20;
const haveAnalyze = spawnSync('systemd-analyze', ['--version']).status === 0;
const isRoot = process.getuid?.() === 0;
const scratch = mkdtempSync(join(tmpdir(), 'vub-unit-'));

afterAll(() => rmSync(scratch, { recursive: true, force: true }));

/** Values of `key=` lines in the [Service] section, in order. */
function serviceValues(text: string, key: string): string[] {
  const service = text.split(/^\[Service\]$/m)[1]?.split(/^\[/m)[0] ?? '';
  return service.split('\n').filter((l) => l.startsWith(`${key}=`)).map((l) => l.slice(key.length + 1));
}

/** systemd's syscall groups, expanded (from `systemd-analyze syscall-filter`). */
function syscallGroups(): Map<string, Set<string>> {
  const raw = new Map<string, string[]>();
  let cur: string | null = null;
  for (const line of execFileSync('systemd-analyze', ['syscall-filter'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).split('\n')) {
    if (line.startsWith('@')) raw.set((cur = line.trim()), []);
    else if (cur && line.trim() && !line.trim().startsWith('#')) raw.get(cur)!.push(line.trim());
  }
  const expand = (name: string, seen = new Set<string>()): Set<string> => {
    const out = new Set<string>();
    if (seen.has(name)) return out;
    seen.add(name);
    for (const m of raw.get(name) ?? []) for (const s of m.startsWith('@') ? expand(m, seen) : [m]) out.add(s);
    return out;
  };
  return new Map([...raw.keys()].map((g) => [g, expand(g)]));
}

skipUnless(haveAnalyze, SKIP.noSystemdAnalyze).describe('systemd unit', () => {
  const text = readFileSync(UNIT, 'utf8');

  it('systemd-analyze verify is clean', () => {
    const copy = join(scratch, 'vhost-user-balloon.service');
    copyFileSync(UNIT, copy);
    const r = spawnSync('systemd-analyze', ['verify', '--man=no', copy], { encoding: 'utf8' });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
  });

  it('one unit for the host daemon: the per-VM template is gone', () => {
    expect(readdirSync(join(ROOT, 'examples', 'systemd')).filter((f) => f.endsWith('.service'))).toEqual(['vhost-user-balloon.service']);
  });

  it('runs the host daemon as vhost-user-balloon with no capabilities, grants its files as root first, keeps the hardening', () => {
    expect(serviceValues(text, 'User')).toEqual(['vhost-user-balloon']);
    expect(serviceValues(text, 'Group')).toEqual(['vhost-user-balloon']);
    const pre = serviceValues(text, 'ExecStartPre');
    expect(pre).toHaveLength(1);
    expect(pre[0]).toMatch(/^\+\/usr\/bin\/node \S+\/dist\/src\/main\.js --grant vhost-user-balloon --host$/);
    expect(serviceValues(text, 'ExecStart')).toEqual([expect.stringMatching(/^\/usr\/bin\/node \S+\/dist\/src\/main\.js --host$/)]);
    // The grant reads the same (default) config and state directories as the daemon.
    expect(pre[0]!.replace(/^\+/, '').replace(' --grant vhost-user-balloon', '')).toBe(serviceValues(text, 'ExecStart')[0]);
    for (const [k, v] of [
      ['Type', 'simple'], ['Restart', 'on-failure'], ['ExecReload', 'kill -HUP $MAINPID'],
      ['NoNewPrivileges', 'yes'], ['ProtectSystem', 'strict'], ['ReadWritePaths', '/sys/fs/cgroup'], ['PrivateDevices', 'yes'],
      ['RestrictNamespaces', 'yes'], ['RestrictSUIDSGID', 'yes'], ['SystemCallArchitectures', 'native'],
      ['CapabilityBoundingSet', ''], ['AmbientCapabilities', ''], ['UMask', '0007'],
      ['RuntimeDirectory', 'vhost-user-balloon'], ['StateDirectory', 'vhost-user-balloon'], ['StateDirectoryMode', '0700'],
      ['ConfigurationDirectory', 'vhost-user-balloon vhost-user-balloon/vms'], ['SystemCallErrorNumber', 'EPERM'],
    ] as const) expect(serviceValues(text, k), k).toEqual([v]);
    expect(serviceValues(text, 'SystemCallFilter')[0]).toMatch(/^@system-service\b/);
    expect(text).toMatch(/^Before=libvirtd\.service virtqemud\.service$/m);
  });

  it('its directories are the ones the daemon and balloonctl use by default', () => {
    const env = { ...process.env };
    for (const k of ['VUB_RUN_DIR', 'VUB_STATE_DIR', 'VUB_CONFIG_DIR']) delete process.env[k];
    try {
      const post = serviceValues(text, 'ExecStartPost');
      expect(post).toHaveLength(1);
      // Active once the control socket is there.
      expect(post[0]).toContain(`[ -S ${hostControlSocket()} ]`);
      expect(hostControlSocket()).toBe(`/run/${serviceValues(text, 'RuntimeDirectory')[0]}/control.sock`);
      expect(stateDir()).toBe(`/var/lib/${serviceValues(text, 'StateDirectory')[0]}`);
      expect(configDir()).toBe(`/etc/${serviceValues(text, 'ConfigurationDirectory')[0]!.split(' ')[1]}`);
    } finally {
      Object.assign(process.env, env);
    }
  });

  it('the sysusers.d file creates the system user (in a scratch root)', () => {
    const root = join(scratch, 'sysroot');
    mkdirSync(join(root, 'etc'), { recursive: true });
    const r = spawnSync('systemd-sysusers', [`--root=${root}`, SYSUSERS], { encoding: 'utf8' });
    expect(r.status).toBe(0);
    const passwd = readFileSync(join(root, 'etc', 'passwd'), 'utf8');
    expect(passwd).toMatch(/^vhost-user-balloon:x:\d+:\d+:vhost-user-balloon daemon:\/nonexistent:\/usr\/sbin\/nologin$/m);
  });

  skipUnless(isRoot, SKIP.notRoot).it('every system call of a host-daemon run passes the unit\'s SystemCallFilter=', async () => {
    execFileSync('bash', ['-c', `source ${ROOT}/native/lib.sh && apt_ensure strace`]);
    const groups = syscallGroups();
    const names = (spec: string) => spec.split(/\s+/).filter(Boolean).flatMap((n) => (n.startsWith('@') ? [...(groups.get(n) ?? [])] : [n]));
    const allowed = new Set<string>();
    for (const line of serviceValues(text, 'SystemCallFilter')) {
      if (line.startsWith('~')) for (const n of names(line.slice(1))) allowed.delete(n);
      else for (const n of names(line)) allowed.add(n);
    }
    // systemd always lets these through (systemd.exec(5)).
    for (const n of ['execve', 'exit', 'exit_group', 'getrlimit', 'rt_sigreturn', 'sigreturn']) allowed.add(n);

    // A host daemon as the unit runs it (directories in scratch): a VM of the
    // config directory (PSI), one added through the control socket (vmpressure
    // where cgroup v1 memory is mounted), guests ballooning, metrics, a reload
    // that removes the first, a remove, SIGTERM.
    const dir = join(scratch, 'host');
    const run = join(dir, 'run');
    mkdirSync(join(dir, 'conf'), { recursive: true });
    writeFileSync(join(dir, 'conf', 'vm1.json'), JSON.stringify({ pressure: 'psi', 'stats-interval': 1 }));
    const trace = join(dir, 'trace');
    const port = 30_000 + (process.pid % 20_000);
    const strace = spawn('strace', ['-f', '-qq', '-o', trace, process.execPath, DAEMON_JS, '--host', '--state-dir', join(dir, 'state'),
      '--config-dir', join(dir, 'conf'), '--metrics-listen', `127.0.0.1:${port}`], { stdio: 'ignore', env: { ...process.env, VUB_RUN_DIR: run } });
    const done = new Promise((r) => strace.once('exit', r));
    try {
      const control = join(run, 'control.sock');
      for (let i = 0; i < 300 && !existsSync(join(run, 'vm1.sock')); i++) await new Promise((r) => setTimeout(r, 50));
      const ctl = await ControlClient.connect(control);
      const guests: SimGuest[] = [];
      try {
        const added = await ctl.request<{ socket: string }>({
          op: 'add', vm: 'vm2', options: { 'stats-interval': 1, pressure: existsSync('/sys/fs/cgroup/memory/memory.pressure_level') ? 'vmpressure' : 'psi' },
        });
        for (const [vm, socketPath] of [['vm1', join(run, 'vm1.sock')], ['vm2', added.socket]] as const) {
          const guest = await SimGuest.start({ socketPath, ramBytes: 128 * MiB });
          guests.push(guest);
          guest.mem.touch(0, guest.mem.usableEnd);
          await guest.inflate((64 * MiB) / PAGE);
          await new Promise((r) => setTimeout(r, 1500)); // a stats round and the deferred discard
          await guest.deflate((32 * MiB) / PAGE);
          const s = await ctl.request<DaemonStatus>({ op: 'status', vm });
          expect(s.counters.discardedBytes, vm).toBe(64 * MiB);
        }
        await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
        await ctl.request({ op: 'set-target', vm: 'vm2', value: '16M', owner: 'test' }); // saved in the state directory
        guests.shift()!.close();
        unlinkSync(join(dir, 'conf', 'vm1.json'));
        const h = await ctl.request<HostStatus>({ op: 'host-status' });
        process.kill(h.pid, 'SIGHUP'); // ExecReload=
        for (let i = 0; i < 100 && existsSync(join(run, 'vm1.sock')); i++) await new Promise((r) => setTimeout(r, 50));
        expect(existsSync(join(run, 'vm1.sock'))).toBe(false);
        await ctl.request({ op: 'remove', vm: 'vm2', force: true });
        process.kill(h.pid, 'SIGTERM');
      } finally {
        ctl.close();
        for (const g of guests) g.close();
      }
      await done;
    } finally {
      strace.kill('SIGKILL');
    }
    const used = new Set<string>();
    for (const line of readFileSync(trace, 'utf8').split('\n')) {
      const m = /^\d+\s+(?:<\.\.\. )?([a-z0-9_]+)(?:\(| resumed>)/.exec(line);
      if (m) used.add(m[1]!);
    }
    const refused = [...used].filter((n) => !allowed.has(n)).sort();
    console.log(`host daemon run under strace: ${used.size} distinct system calls; refused by the unit's filter: ${JSON.stringify(refused)}`);
    expect(used.size).toBeGreaterThan(40);
    expect(refused).toEqual([]);
  }, 120_000);
});
