// The control socket and balloonctl against the real daemon: who may connect,
// what bad requests get, and the errors an operator sees.
import { spawnSync } from 'node:child_process';
import { chmodSync } from 'node:fs';
import { createConnection } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ControlClient } from '../../src/control/client.js';
import type { DaemonStatus } from '../../src/control/status.js';
import { DAEMON_JS, DaemonProcess } from '../sim/daemon.js';
import { SimGuest } from '../sim/driver.js';
import { SKIP, skipUnless, skipUnlessAll } from '../skip.js';
import { haveV1Memory, isRoot, SEED_FIXED_ARGS, V1_MEMORY } from './pressure-helpers.js';

const BALLOONCTL = join(DAEMON_JS, '..', 'cli', 'balloonctl.js');
const NOBODY = 65534;
const MiB = 2 ** 20;

/** One request line on a fresh connection; resolves with the reply line(s) until the daemon closes or answers. */
function raw(path: string, payload: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = createConnection(path);
    let out = '';
    s.setEncoding('utf8');
    s.on('data', (d: string) => {
      out += d;
      if (out.includes('\n')) s.end();
    });
    s.on('close', () => resolve(out));
    s.on('error', reject);
    s.write(payload);
  });
}

function balloonctl(args: string[], uid?: number) {
  return spawnSync(process.execPath, [BALLOONCTL, ...args], {
    encoding: 'utf8', timeout: 15_000, ...(uid === undefined ? {} : { uid, gid: NOBODY }),
  });
}

describe('control socket security and bad requests', () => {
  let daemon: DaemonProcess;
  let guest: SimGuest;

  beforeAll(async () => {
    daemon = await DaemonProcess.start(['--floor', '48M', ...SEED_FIXED_ARGS]);
    guest = await SimGuest.start({ socketPath: daemon.socketPath, ramBytes: 64 * MiB });
  });
  afterAll(async () => {
    guest?.close();
    await daemon?.stop();
  });

  const status = async () => {
    const c = await ControlClient.connect(daemon.controlPath);
    try {
      return await c.request<DaemonStatus>({ op: 'status' });
    } finally {
      c.close();
    }
  };

  skipUnless(isRoot, SKIP.notRoot).it('a non-root caller cannot open the 0600 socket: balloonctl says so and exits 77', () => {
    const r = balloonctl(['status', '--socket', daemon.controlPath], NOBODY);
    expect(r.status).toBe(77);
    expect(r.stderr).toMatch(/permission denied/i);
  });

  skipUnless(isRoot, SKIP.notRoot).it('even with the file mode opened up, SO_PEERCRED refuses a caller that is neither root nor the daemon\'s user', async () => {
    chmodSync(daemon.controlPath, 0o666);
    try {
      const r = balloonctl(['status', '--socket', daemon.controlPath, '--json'], NOBODY);
      expect(r.status).not.toBe(0);
      expect(r.stderr).toMatch(/not allowed|permission|refused/i);
    } finally {
      chmodSync(daemon.controlPath, 0o600);
    }
    expect((await status()).connected).toBe(true);
  });

  it.each([
    ['not JSON', 'hello there\n', /"ok":false/],
    ['unknown operation', '{"v":1,"id":1,"op":"format-disk"}\n', /"ok":false.*format-disk/],
    ['unsupported version', '{"v":99,"id":1,"op":"status"}\n', /"ok":false.*version/],
    ['bad set-target value', '{"v":1,"id":1,"op":"set-target","value":"lots"}\n', /"ok":false.*lots/],
    ['oversized request', `${'x'.repeat(100 * 1024)}`, /"ok":false.*longer than/],
  ])('%s gets an error reply and the daemon carries on', async (_what, payload, reply) => {
    const before = await status();
    expect(await raw(daemon.controlPath, payload)).toMatch(reply);
    const after = await status();
    expect(after.pid).toBe(before.pid);
    expect(after.targetBytes).toBe(before.targetBytes);
    expect(after.connected).toBe(true);
  });

  it('balloonctl errors say what to do: no daemon (exit 3), bad unit, target below the floor', async () => {
    const none = balloonctl(['status', 'no-such-vm-here']);
    expect(none.status).toBe(3);
    expect(none.stderr).toMatch(/no daemon at .*no-such-vm-here\.ctl[\s\S]*balloonctl list/);

    const unit = balloonctl(['set', 'vhost', '512', '--socket', daemon.controlPath]);
    expect(unit.status).toBe(1);
    expect(unit.stderr).toMatch(/no unit[\s\S]*512M/);

    // 64 MiB of guest RAM with a 48 MiB floor: at most 16 MiB may be ballooned.
    const floor = balloonctl(['set', 'vhost', '32M', '--socket', daemon.controlPath]);
    expect(floor.status).toBe(1);
    expect(floor.stderr).toMatch(/floor/);
    expect((await status()).targetBytes).toBe(0);
  });
});

skipUnlessAll([isRoot, SKIP.notRoot], [haveV1Memory, SKIP.noV1Memory]).describe('balloonctl tune --level re-registers the vmpressure source at run time', () => {
  let daemon: DaemonProcess;
  beforeAll(async () => {
    daemon = await DaemonProcess.start(['--pressure', 'vmpressure', '--memcg', V1_MEMORY!, '--pressure-level', 'low', ...SEED_FIXED_ARGS]);
  });
  afterAll(async () => {
    await daemon?.stop();
  });

  const source = async () => {
    const c = await ControlClient.connect(daemon.controlPath);
    try {
      return (await c.request<DaemonStatus>({ op: 'status' })).pressure.host.source;
    } finally {
      c.close();
    }
  };

  it('low -> critical, with the daemon\'s own eventfd registration replaced', async () => {
    expect(await source()).toBe(`vmpressure low on ${V1_MEMORY}`);
    const r = balloonctl(['tune', 'vhost', '--level', 'critical', '--step', '16M', '--socket', daemon.controlPath]);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(await source()).toBe(`vmpressure critical on ${V1_MEMORY}`);
    await daemon.waitForLog((l) => l.msg === 'host pressure level changed');
  });

  it('a bad level is refused and changes nothing, not even the other settings in the same request', async () => {
    const reply = await raw(daemon.controlPath, '{"v":1,"id":1,"op":"tune","params":{"level":"extreme","stepBytes":8388608}}\n');
    expect(reply).toMatch(/"ok":false.*extreme/);
    expect(await source()).toMatch(/^vmpressure critical/);
    const c = await ControlClient.connect(daemon.controlPath);
    const st = await c.request<DaemonStatus>({ op: 'status' });
    c.close();
    expect(st.params.stepBytes).toBe(16 * MiB); // from the previous tune, not 8 MiB
  });
});
