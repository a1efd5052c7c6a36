// The systemd unit (examples/systemd/): `systemd-analyze verify` is clean, it
// runs the daemon as vhost-user-balloon with its hardening, the sysusers.d
// file creates that user, and every system call the daemon makes in a run
// passes the unit's SystemCallFilter= as systemd expands it. There is no
// systemd as PID 1 on these machines, so the unit itself cannot be started:
// these are the checks that can be made without it.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { SKIP, skipUnless } from '../skip.js';
import { ControlClient } from '../../src/control/client.js';
import type { DaemonStatus } from '../../src/control/status.js';
import { DAEMON_JS } from '../sim/daemon.js';
import { SimGuest } from '../sim/driver.js';
import { PAGE } from '../sim/guest-memory.js';

const ROOT = join(import.meta.dirname, '..', '..');
const UNIT = join(ROOT, 'examples', 'systemd', 'vhost-user-balloon@.service');
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
    const copy = join(scratch, 'vhost-user-balloon@vm1.service');
    copyFileSync(UNIT, copy);
    // --man=no: Documentation=man:qemu(1) needs the man page installed.
    const r = spawnSync('systemd-analyze', ['verify', '--man=no', copy], { encoding: 'utf8' });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
  });

  it('runs the daemon as vhost-user-balloon with no capabilities, grants its files as root first, keeps the hardening', () => {
    expect(serviceValues(text, 'User')).toEqual(['vhost-user-balloon']);
    expect(serviceValues(text, 'Group')).toEqual(['vhost-user-balloon']);
    const pre = serviceValues(text, 'ExecStartPre');
    expect(pre).toHaveLength(1);
    expect(pre[0]).toMatch(/^\+\/usr\/bin\/node \S+\/main\.js --grant vhost-user-balloon --vm %i --config \/etc\/vhost-user-balloon\/%i\.json$/);
    // The grant sees the same options as the daemon.
    expect(serviceValues(text, 'ExecStart')[0]).toContain('--vm %i --config /etc/vhost-user-balloon/%i.json');
    for (const [k, v] of [
      ['NoNewPrivileges', 'yes'], ['ProtectSystem', 'strict'], ['ReadWritePaths', '/sys/fs/cgroup'], ['PrivateDevices', 'yes'],
      ['RestrictNamespaces', 'yes'], ['RestrictSUIDSGID', 'yes'], ['SystemCallArchitectures', 'native'],
      ['CapabilityBoundingSet', ''], ['AmbientCapabilities', ''], ['RuntimeDirectory', 'vhost-user-balloon'], ['UMask', '0007'],
      ['SystemCallErrorNumber', 'EPERM'],
    ] as const) expect(serviceValues(text, k), k).toEqual([v]);
    expect(serviceValues(text, 'SystemCallFilter')[0]).toMatch(/^@system-service\b/);
  });

  it('the sysusers.d file creates the system user (in a scratch root)', () => {
    const root = join(scratch, 'sysroot');
    mkdirSync(join(root, 'etc'), { recursive: true });
    const r = spawnSync('systemd-sysusers', [`--root=${root}`, SYSUSERS], { encoding: 'utf8' });
    expect(r.status).toBe(0);
    const passwd = readFileSync(join(root, 'etc', 'passwd'), 'utf8');
    expect(passwd).toMatch(/^vhost-user-balloon:x:\d+:\d+:vhost-user-balloon daemon:\/nonexistent:\/usr\/sbin\/nologin$/m);
  });

  skipUnless(isRoot, SKIP.notRoot).it('every system call the daemon makes in a run passes the unit\'s SystemCallFilter=', async () => {
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

    const dir = join(scratch, 'run');
    mkdirSync(dir);
    const sock = join(dir, 'vm.sock');
    const trace = join(dir, 'trace');
    const port = 30_000 + (process.pid % 20_000);
    const strace = spawn('strace', ['-f', '-qq', '-o', trace, process.execPath, DAEMON_JS, '--socket-path', sock,
      '--pressure', 'psi', '--stats-interval', '1', '--metrics-listen', `127.0.0.1:${port}`], { stdio: 'ignore' });
    const done = new Promise((r) => strace.once('exit', r));
    try {
      for (let i = 0; i < 300 && !existsSync(sock); i++) await new Promise((r) => setTimeout(r, 50));
      const guest = await SimGuest.start({ socketPath: sock, ramBytes: 256 * MiB });
      const ctl = await ControlClient.connect(join(dir, 'vm.ctl'));
      try {
        guest.mem.touch(0, guest.mem.usableEnd);
        await guest.inflate((64 * MiB) / PAGE);
        await new Promise((r) => setTimeout(r, 1500)); // a stats round and the deferred discard
        await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
        await guest.deflate((64 * MiB) / PAGE);
        const s = await ctl.request<DaemonStatus>({ op: 'status' });
        expect(s.counters.discardedBytes).toBe(64 * MiB);
        process.kill(s.pid, 'SIGTERM');
      } finally {
        ctl.close();
        guest.close();
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
    console.log(`daemon run under strace: ${used.size} distinct system calls; refused by the unit's filter: ${JSON.stringify(refused)}`);
    expect(used.size).toBeGreaterThan(40);
    expect(refused).toEqual([]);
  }, 120_000);
});
