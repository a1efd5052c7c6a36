// The seed's guest-pressure rules against real host pressure, in the real
// daemon with the simulated guest: vmpressure from a squeezed memcg inflates;
// MSG_PRESSURE during that inflation cancels it at the balloon's current
// size; host events inside the hysteresis (2 s here) are ignored and the
// first one after it inflates again; MSG_PRESSURE with no inflation in
// progress deflates one step.
import { afterEach, expect, it } from 'vitest';
import { ControlClient } from '../../src/control/client.js';
import type { HistoryRecord } from '../../src/control/controller.js';
import type { DaemonStatus } from '../../src/control/status.js';
import { DaemonProcess } from '../sim/daemon.js';
import { SimGuest } from '../sim/driver.js';
import { haveV1Memory, isRoot, makeCgroup, MiB, sleep, startAllocator, useCgroupRig, waitUntil } from './pressure-helpers.js';
import { SKIP, skipUnlessAll } from '../skip.js';

const STEP_PAGES = (32 * MiB) / 4096;
const HYSTERESIS_MS = 2000;
const MSG_PRESSURE = 1;

function lastOf(h: HistoryRecord[], rule: string): HistoryRecord {
  const d = [...h].reverse().find((x) => x.rule === rule);
  if (!d) throw new Error(`no ${rule} decision in the history`);
  return d;
}

skipUnlessAll([isRoot, SKIP.notRoot], [haveV1Memory, SKIP.noV1Memory]).describe('MSG_PRESSURE and hysteresis against real vmpressure', () => {
  const rig = useCgroupRig();
  let daemon: DaemonProcess | undefined;
  let guest: SimGuest | undefined;
  let ctl: ControlClient | undefined;

  afterEach(async () => {
    ctl?.close();
    guest?.close();
    await daemon?.stop();
    daemon = guest = ctl = undefined;
  });

  it('cancels the inflation at the current size, ignores host events for the hysteresis, inflates after it, then deflates one step', async () => {
    const cg = makeCgroup({ limitBytes: 64 * MiB });
    rig.cgroups.push(cg);
    // A 5 s rate limit leaves room to act between host steps; the message
    // goes out after it has run out, so the hysteresis alone holds host steps.
    daemon = await DaemonProcess.start(['--pressure', 'vmpressure', '--memcg', cg.v1, '--stats-interval', '0',
      '--hysteresis', `${HYSTERESIS_MS / 1000}s`, '--policy', 'seed', '--wait-for-guest', '--rate-limit', '5s']);
    guest = await SimGuest.start({ socketPath: daemon.socketPath, ramBytes: 512 * MiB });
    const c = await ControlClient.connect(daemon.controlPath);
    ctl = c;
    const status = () => c.request<DaemonStatus>({ op: 'status' });
    const history = async () => (await c.request<{ decisions: HistoryRecord[] }>({ op: 'history' })).decisions;
    const pages = (s: DaemonStatus) => ({ target: s.targetBytes / 4096, balloon: s.balloonBytes / 4096 });
    const a = startAllocator([cg.v1], 200, 30_000);
    rig.allocators.push(a);

    // Host pressure asks for one step; the guest gets part of the way.
    expect(await guest.waitConfigChange(15_000)).toBe(true);
    const firstStep = Date.now();
    await guest.inflate(3000);
    let s = await status();
    expect(pages(s)).toEqual({ target: STEP_PAGES, balloon: 3000 }); // later events wait for the guest
    await sleep(Math.max(0, firstStep + 5200 - Date.now())); // past the rate limit

    // (1) MSG_PRESSURE during the inflation: target := the current balloon size.
    await guest.sendMessages([MSG_PRESSURE]);
    expect(await guest.waitConfigChange()).toBe(true);
    s = await status();
    expect(pages(s)).toEqual({ target: 3000, balloon: 3000 });
    let h = await history();
    const cancel = lastOf(h, 'guest-pressure-cancel');
    expect(cancel.event).toMatch(/message/);
    const cancelAt = Date.parse(cancel.time);

    // (2) Host events inside [cancel, cancel + 2 s) are ignored; the first one after it inflates one step.
    expect(await guest.waitConfigChange(HYSTERESIS_MS + 3000)).toBe(true);
    s = await status();
    expect(pages(s).target).toBe(3000 + STEP_PAGES);
    h = await history();
    const after = h.filter((d) => Date.parse(d.time) >= cancelAt && d.rule.startsWith('host-pressure'));
    const inflate = after.find((d) => d.rule === 'host-pressure-inflate')!;
    const inflateAt = Date.parse(inflate.time);
    // Those before the inflate; later ones fall to the rate limit (a slow history request sees them too).
    // Stamps are wall-clock ms of monotonic decisions: each may round by 1.
    const ignored = after.filter((d) => d.rule === 'host-pressure-ignored' && Date.parse(d.time) < inflateAt);
    expect(ignored.length).toBeGreaterThan(0);
    expect(ignored.filter((d) => !(d.cause === 'guest-pressure' && Date.parse(d.time) <= cancelAt + HYSTERESIS_MS + 1))).toEqual([]);
    const ignoredEvents = ignored.reduce((n, d) => n + d.count, 0);
    // Half-open window, monotonic in the daemon: wall-clock ms may round by 1.
    expect(inflateAt - cancelAt).toBeGreaterThanOrEqual(HYSTERESIS_MS - 1);
    expect(inflateAt - cancelAt).toBeLessThan(HYSTERESIS_MS + 1000); // events keep coming: the first one after it
    expect(inflate.oldTargetBytes / 4096).toBe(3000);

    // (3) The guest reaches the target; MSG_PRESSURE now deflates one step.
    await guest.followTarget();
    await waitUntil(() => guest!.pages.size === 3000 + STEP_PAGES, 2000, 'the guest at the target');
    const sent = Date.now();
    expect(sent - inflateAt).toBeLessThan(5000); // still inside the rate limit: no host step in between
    await guest.sendMessages([MSG_PRESSURE]);
    expect(await guest.waitConfigChange()).toBe(true);
    s = await status();
    expect(pages(s)).toEqual({ target: 3000, balloon: 3000 + STEP_PAGES });
    const deflate = lastOf(await history(), 'guest-pressure-deflate');
    expect(deflate.oldTargetBytes - deflate.newTargetBytes).toBe(32 * MiB);
    console.log('hysteresis against real vmpressure:', JSON.stringify({
      hostEventsIgnoredInHysteresis: ignoredEvents, historyEntriesForThem: ignored.length,
      firstInflateAfterCancelMs: inflateAt - cancelAt, messageToDeflateMs: Date.parse(deflate.time) - sent,
    }));
    expect(daemon.find((l) => l.level >= 50)).toEqual([]);
  }, 60_000);
});
