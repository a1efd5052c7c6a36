// Bad operator input to the daemon: a clear message naming the option and
// what is allowed, exit status 1, and nothing left behind.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { DAEMON_JS } from '../sim/daemon.js';

describe('daemon option errors', () => {
  it.each([
    [['--step', '0'], /--step: 0 is out of range/, /4 KiB to 64 GiB/],
    [['--step', '12X'], /--step 12X/, /unit/],
    [['--hysteresis', '100h'], /--hysteresis: 360000000 is out of range/, /0 to 24 h/],
    [['--hysteresis', 'soon'], /--hysteresis soon: not a duration/, /60s/],
    [['--stats-available-percent', '200'], /--stats-available-percent: 200 is out of range/, /0 to 100/],
    [['--rate-limit', 'x'], /--rate-limit x: not a duration/, /500ms/],
    [['--message-vq-bit', '40'], /message.*40/, /6-23|off/],
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
