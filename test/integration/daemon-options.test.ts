// Bad operator input to the daemon: a clear message naming the option and
// what is allowed, exit status 1, and nothing left behind.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { DAEMON_JS } from '../sim/daemon.js';
import { SKIP, skipUnless } from '../skip.js';
import { haveV1Memory, SYSTEM_PSI, V1_MEMORY } from './pressure-helpers.js';

describe('daemon option errors', () => {
  it.each([
    [['--step', '0'], /--step: 0 is out of range/, /4 KiB to 64 GiB/],
    [['--step', '12X'], /--step 12X/, /unit/],
    [['--hysteresis', '100h'], /--hysteresis: 360000000 is out of range/, /0 to 24 h/],
    [['--hysteresis', 'soon'], /--hysteresis soon: not a duration/, /60s/],
    [['--stats-available-percent', '200'], /--stats-available-percent: 200 is out of range/, /0 to 100/],
    [['--rate-limit', 'x'], /--rate-limit x: not a duration/, /500ms/],
    [['--stats-major-faults', 'abc'], /--stats-major-faults: not a number/, /from 0 to \d+ faults/],
    [['--stats-stalls', '0.5'], /--stats-stalls: 0.5 is out of range/, /an integer from 0/],
    [['--stats-oom-kills', '-1'], /--stats-oom-kills: -1 is out of range/, /from 0 to \d+ kills/],
    [['--stats-max-sample-gap', '48h'], /--stats-max-sample-gap: 172800000 is out of range/, /0 to 86400000 ms/],
    [['--stats-direct-reclaim', '1X'], /--stats-direct-reclaim 1X: unknown unit/, /units: K, M, G/],
    [['--stats-available=50%'], /--stats-available 50%: give an absolute size/, /512M/],
    [['--message-vq-bit', '40'], /message.*40/, /6-23|off/],
    [['--policy', 'hots'], /--policy "hots" is not a policy/, /did you mean "host"\? use one of host, seed, mom, proxmox/],
    [['--policy', 'ovirt'], /--policy "ovirt" is not a policy/, /use one of host, seed, mom, proxmox/],
    [['--weight', '-2'], /--weight: -2 is out of range/, /0 to 1000/],
    [['--weight', 'heavy'], /--weight: not a number/, /from 0 to 1000/],
    [['--reserve', '10%'], /--reserve 10%: give an absolute size/, /512M/],
    [['--sample-interval', '10ms'], /--sample-interval 10ms is out of range/, /100ms to 60s/],
    [['--sample-interval', 'soon'], /--sample-interval soon: not a duration/, /60s/],
    [['--headroom', '95%'], /--headroom 95% is out of range/, /0% to 90% of the memcg limit/],
    [['--headroom', 'lots'], /--headroom lots: "lots" is not a size/, /a share of the memcg limit \(10%\) or a size \(512M\)/],
    [['--horizon', '2h'], /--horizon 2h is out of range/, /0 to 60s \(default 2s\)/],
    [['--guest-reserve', '95%'], /--guest-reserve 95% is out of range/, /0% to 90% \(default 10%\)/],
    [['--give-back-step', 'lots'], /--give-back-step lots/, /size|unit/],
    [['--pressure', 'vmpressure', '--memcg', '/sys/fs/cgroup/memory/vub-no-such-memcg'], /EBALLOON_PRESSURE_NOENT: .*vub-no-such-memcg does not exist/, /--memcg/],
    [['--pressure', 'psi', '--psi-trigger', 'some 150000 1000000'], /psi|trigger/i, /2 s|multiple/],
  ])('%j', (args, message, hint) => {
    const dir = mkdtempSync(join(tmpdir(), 'vub-opt-'));
    try {
      const sock = join(dir, 'vm.sock');
      const r = spawnSync(process.execPath, [DAEMON_JS, '--socket-path', sock, ...args], { encoding: 'utf8', timeout: 15_000 });
      expect(r.status).toBe(1);
      expect(r.stderr).toMatch(message);
      expect(r.stderr).toMatch(hint);
      expect(existsSync(sock)).toBe(false);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('daemon config file (--config, shared by the hook and the systemd unit)', () => {
  const run = (config: string, extra: string[] = [], timeout = 15_000) => {
    const dir = mkdtempSync(join(tmpdir(), 'vub-cfg-'));
    try {
      const file = join(dir, 'vm.json');
      writeFileSync(file, config);
      return spawnSync(process.execPath, [DAEMON_JS, '--socket-path', join(dir, 'vm.sock'), '--config', file, ...extra], { encoding: 'utf8', timeout });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  };

  it.each([
    ['{"stepp": "32M"}', /Unknown argument: stepp/],
    ['{"step": "0"}', /--step: 0 is out of range/],
    ['{"pressure-level": "extreme"}', /pressure-level.*extreme|Invalid values/s],
    ['{bad', /config file .*vm\.json: .*JSON/],
    ['[1, 2]', /config file .*vm\.json: not a JSON object/],
  ])('%s is refused with a message naming the key', (text, message) => {
    const r = run(text, ['--pressure', 'none']);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(message);
  });

  // The example watches a v1 memcg (vmpressure); without v1 memory (v2-only hosts) the same file with PSI, system-wide.
  skipUnless(haveV1Memory || existsSync(SYSTEM_PSI), SKIP.noPsi).it('examples/config/vm1.json is accepted: the daemon starts with it (memcg pointed at one that exists here)', () => {
    const example = JSON.parse(readFileSync(join(import.meta.dirname, '..', '..', 'examples', 'config', 'vm1.json'), 'utf8')) as Record<string, unknown>;
    expect(Object.keys(example).length).toBeGreaterThan(5);
    // Command-line flags win over the file: a free metrics port; the run ends by timeout (SIGTERM).
    const here = haveV1Memory ? { memcg: V1_MEMORY } : { memcg: undefined, pressure: 'psi' };
    const r = run(JSON.stringify({ ...example, ...here, 'log-level': 'info' }), ['--metrics-listen', `127.0.0.1:${30_000 + (process.pid % 20_000)}`], 3000);
    expect(r.stderr).toContain('"msg":"vhost-user-balloon running"');
    expect(r.stderr).toContain('"step":"32 MiB"');
    expect(r.stderr).not.toMatch(/"level":(50|60)/);
  });
});
