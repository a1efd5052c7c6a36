// The v2-only layout (Debian 12 with systemd: cgroup2 at /sys/fs/cgroup and
// no v1 hierarchy) reproduced on this hybrid machine: in a private mount
// namespace (test/v2-only/in-namespace.sh) the daemon's detection, the
// mounts helper and the demo's cgroup choice see only cgroup2. The host's
// mounts are untouched.
//
// Not reproducible here: this kernel keeps the memory controller on the v1
// hierarchy (still mounted outside the namespace), so the namespace's cgroup2
// root offers no memory controller: no memory.max, and the demo (and the PSI
// tests that squeeze a group) cannot make a limited cgroup2 group here. On a
// real v2-only host the same checks expect it to (see memRoot below).
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { expect, it } from 'vitest';
import { SKIP, skipUnlessAll } from '../skip.js';
import { DAEMON_JS } from '../sim/daemon.js';
import { haveV1Memory, haveV2Memory, isRoot, uniqueName } from './pressure-helpers.js';

const ROOT = join(import.meta.dirname, '..', '..');
const IN_NS = join(ROOT, 'test', 'v2-only', 'in-namespace.sh');
const haveUnshare = spawnSync('unshare', ['--help'], { stdio: 'ignore' }).status === 0;
const dist = (p: string) => pathToFileURL(join(ROOT, 'dist', p.startsWith('lab/') ? '' : 'src', p)).href;

/** What the product sees inside the namespace, as JSON from a node child there. */
const PROBE = `
  const { cgroupLayout, memoryCgroupRoot } = await import(${JSON.stringify(dist('host/cgroups.js'))});
  const { planPressure, DEFAULT_PRESSURE } = await import(${JSON.stringify(dist('pressure/detect.js'))});
  const { Memcg } = await import(${JSON.stringify(dist('lab/host/memcg.js'))});
  const fs = await import('node:fs');
  const attempt = (f) => { try { return { ok: f() }; } catch (e) { return { err: (e.pressureCode ?? '') + ' ' + e.message }; } };
  const l = cgroupLayout();
  const group = l.v2 + '/' + process.argv[1];
  fs.mkdirSync(group);
  const out = {
    layout: { kind: l.kind, v1Memory: l.v1Memory, v2: l.v2, controllers: l.v2Controllers },
    memRoot: memoryCgroupRoot(l),
    auto: attempt(() => planPressure(DEFAULT_PRESSURE)),
    autoGroup: attempt(() => planPressure({ ...DEFAULT_PRESSURE, memcg: group })),
    vmpressure: attempt(() => planPressure({ ...DEFAULT_PRESSURE, kind: 'vmpressure' })),
    v1Memcg: attempt(() => Memcg.create('x', 1 << 26)),
  };
  // The demo's choice; removed at once when it could be made (a real v2-only host).
  out.demoCgroup = attempt(() => { const m = Memcg.createAny(process.argv[1] + '-demo', 1 << 26); fs.rmdirSync(m.path); return { version: m.version, args: m.pressureArgs().slice(0, 2) }; });
  fs.rmdirSync(group);
  console.log(JSON.stringify(out));
`;

const gate = skipUnlessAll([isRoot, SKIP.notRoot], [haveUnshare, SKIP.noUnshare]);

gate.describe('a cgroup v2-only layout (private mount namespace: cgroup2 alone at /sys/fs/cgroup)', () => {
  it('mounts, detection, the vmpressure error and the demo\'s cgroup choice', () => {
    const r = spawnSync('bash', [IN_NS, process.execPath, '--input-type=module', '-e', PROBE, uniqueName('v2ns')], { encoding: 'utf8', timeout: 30_000 });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const got = JSON.parse(r.stdout) as Record<string, unknown>;
    console.log('inside the namespace:', JSON.stringify(got));
    expect(got.layout).toMatchObject({ kind: 'v2', v1Memory: null, v2: '/sys/fs/cgroup' });
    // auto: no v1 memory mounted, so system-wide PSI; a cgroup2 group: its own memory.pressure.
    expect(got.auto).toEqual({ ok: { kind: 'psi', file: '/proc/pressure/memory', trigger: { kind: 'some', stallUs: 100_000, windowUs: 2_000_000 } } });
    expect(got.autoGroup).toMatchObject({ ok: { kind: 'psi', file: expect.stringMatching(/^\/sys\/fs\/cgroup\/vub-pressure-.*\/memory\.pressure$/) } });
    expect((got.vmpressure as { err: string }).err).toMatch(/^EBALLOON_PRESSURE_CONTROLLER .*the cgroup v1 memory controller is not mounted/);
    expect((got.v1Memcg as { err: string }).err).toMatch(/no cgroup v1 memory hierarchy is mounted/);
    // Hybrid host: memory stays on v1, so the namespace's cgroup2 has none. A real v2-only host: it has.
    if (haveV1Memory) {
      expect(got.memRoot).toBeNull();
      expect((got.demoCgroup as { err: string }).err).toMatch(/no memory cgroup can be made here/);
    } else if (haveV2Memory) {
      expect(got.memRoot).toEqual({ version: 2, root: '/sys/fs/cgroup' });
      expect(got.demoCgroup).toEqual({ ok: { version: 2, args: ['--pressure', 'psi'] } });
    }
  });

  it('the daemon with --pressure auto there starts and watches system-wide PSI', async () => {
    expect(existsSync(DAEMON_JS)).toBe(true);
    const sock = join('/tmp', `${uniqueName('v2ns')}.sock`);
    const child = spawn('bash', [IN_NS, process.execPath, DAEMON_JS, '--socket-path', sock, '--pressure', 'auto', '--log-level', 'info'],
      { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.setEncoding('utf8').on('data', (s: string) => { err += s; });
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    try {
      const end = Date.now() + 15_000;
      while (!err.includes('watching host memory pressure') && child.exitCode === null && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
      const line = err.split('\n').find((l) => l.includes('watching host memory pressure'));
      expect(line, err).toBeDefined();
      expect(JSON.parse(line!).source).toBe('psi "some 100000 2000000" on /proc/pressure/memory');
    } finally {
      child.kill('SIGTERM');
      await exited;
    }
  }, 30_000);
});
