// The main job end to end: the VM's QEMU in a host memcg that a sibling
// allocator squeezes; real host pressure events inflate the balloon in steps
// (vmpressure on a cgroup v1 memcg; on a v2-only host PSI on a cgroup2 group
// with memory.max, as the demo chooses); then a guest workload needs memory
// and stats-derived pressure deflates it. This is `npm run demo` with
// assertions.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { DecisionRecord } from '../../src/control/status.js';
import { type DemoResult, runDemo } from '../../lab/demo/scenario.js';
import { DAEMON_JS } from '../sim/daemon.js';
import { memoryCgroupRoot } from '../../src/host/cgroups.js';
import { SKIP, skipUnlessAll } from '../skip.js';
import { SEED_FIXED_ARGS } from '../integration/pressure-helpers.js';

const MiB = 2 ** 20;
const STEP = 32 * MiB;

skipUnlessAll([process.getuid?.() === 0, SKIP.notRoot], [memoryCgroupRoot() !== null, SKIP.noMemoryLimit]).describe('automatic ballooning with real QEMU, a real memcg and the Debian guest', () => {
  let result: DemoResult;
  const runDir = mkdtempSync(join(tmpdir(), 'vub-run-'));
  const moved = (d: DecisionRecord) => d.newTargetBytes !== d.oldTargetBytes;

  beforeAll(async () => {
    process.env.VUB_RUN_DIR = runDir; // the daemon child inherits it
    result = await runDemo({
      vm: 'auto-e2e', memMiB: 1024, limitMiB: 1400, neighbourMiB: 700, guestTouchMiB: 700,
      // Without deflate-on-OOM the way down can only come from the stats queue.
      guestNeedMiB: 700, phaseSeconds: 45, daemonArgs: ['--no-deflate-on-oom', ...SEED_FIXED_ARGS], daemonJs: DAEMON_JS,
    });
    console.log(result.decisions.filter(moved)
      .map((d) => `${d.time.slice(11, 19)} ${d.rule} ${d.oldTargetBytes / MiB} -> ${d.newTargetBytes / MiB} MiB (${d.event})`).join('\n'));
  }, 10 * 60_000);

  afterAll(() => {
    delete process.env.VUB_RUN_DIR;
    rmSync(runDir, { recursive: true, force: true });
  });

  it('host pressure events from the squeezed memcg raise the target one 32 MiB step at a time', () => {
    const inflates = result.decisions.filter((d) => d.rule === 'host-pressure-inflate' && moved(d));
    expect(inflates.length).toBeGreaterThanOrEqual(2);
    for (const d of inflates) expect(d.newTargetBytes - d.oldTargetBytes).toBe(STEP);
    expect(result.peakTargetBytes).toBeGreaterThanOrEqual(2 * STEP);
    // The guest followed: some sample shows actual at a non-zero target.
    expect(result.ticks.some((t) => t.targetBytes > 0 && t.actualBytes === t.targetBytes)).toBe(true);
  });

  it('a guest workload that needs memory brings the balloon down through stats-derived guest pressure', () => {
    const down = result.decisions.filter((d) => /^guest-pressure-(deflate|cancel)$/.test(d.rule) && moved(d));
    expect(down.length).toBeGreaterThanOrEqual(1);
    expect(down.every((d) => /stats/.test(d.event))).toBe(true);
    expect(down[down.length - 1]?.newTargetBytes).toBeLessThan(down[0]?.oldTargetBytes ?? 0);
    // During the hysteresis that follows, host events change nothing.
    const firstDown = Date.parse(down[0]?.time ?? '');
    const later = result.decisions.filter((d) => d.rule.startsWith('host-pressure') && Date.parse(d.time) > firstDown);
    expect(later.every((d) => !moved(d))).toBe(true);
  });
});
