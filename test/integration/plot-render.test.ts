// `balloonctl plot` from a real daemon's history, rendered by headless
// Chromium: the series are laid out inside the chart and a screenshot is made.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { ControlClient } from '../../src/control/client.js';
import type { DaemonStatus } from '../../src/control/status.js';
import { DAEMON_JS, DaemonProcess } from '../sim/daemon.js';
import { SimGuest } from '../sim/driver.js';
import { SKIP, skipUnless } from '../skip.js';

const ROOT = join(import.meta.dirname, '..', '..');
const BALLOONCTL = join(DAEMON_JS, '..', 'cli', 'balloonctl.js');
const MiB = 2 ** 20;

// Measures every drawn series once Chromium has laid the SVG out.
const MEASURE = `<script>
  const out = {};
  for (const p of document.querySelectorAll('path[class^=series-]')) {
    const b = p.getBBox();
    out[p.getAttribute('class')] = { x: b.x, y: b.y, width: b.width, height: b.height, length: p.getTotalLength() };
  }
  document.body.insertAdjacentHTML('beforeend', '<pre id=m>' + JSON.stringify(out) + '</pre>');
</script>`;

skipUnless(process.getuid?.() === 0, SKIP.notRoot).describe('balloonctl plot renders in headless Chromium', () => {
  const dir = mkdtempSync(join(tmpdir(), 'vub-plot-'));
  let daemon: DaemonProcess;
  let guest: SimGuest;

  beforeAll(async () => {
    execFileSync('bash', ['-c', `source ${ROOT}/native/lib.sh && apt_ensure chromium`], { stdio: 'inherit', timeout: 600_000 });
    daemon = await DaemonProcess.start();
    guest = await SimGuest.start({ socketPath: daemon.socketPath, ramBytes: 64 * MiB });
    const follow = guest.follow();
    const ctl = await ControlClient.connect(daemon.controlPath);
    const until = async (bytes: number) => {
      for (let i = 0; i < 200; i++) {
        if ((await ctl.request<DaemonStatus>({ op: 'status' })).actualBytes === bytes) return;
        await new Promise((r) => setTimeout(r, 25));
      }
      throw new Error(`actual never reached ${bytes}`);
    };
    for (const target of ['16M', '32M', '8M']) {
      await ctl.request({ op: 'set-target', value: target, owner: 'test' });
      await until(Number.parseInt(target, 10) * MiB);
      await new Promise((r) => setTimeout(r, 150)); // samples closer than 100 ms merge
    }
    ctl.close();
    follow.stop();
    await follow.done;
  }, 660_000);

  afterAll(async () => {
    guest?.close();
    await daemon?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('draws target and actual inside the plot area, and the screenshot is a real PNG', () => {
    const svgFile = join(dir, 'timeline.svg');
    const r = spawnSync(process.execPath, [BALLOONCTL, 'plot', '--socket', daemon.controlPath, '--out', svgFile], { encoding: 'utf8' });
    expect(r.status).toBe(0);
    const svg = readFileSync(svgFile, 'utf8');
    const html = join(dir, 'timeline.html');
    writeFileSync(html, `<!doctype html><html><body style="margin:0">${svg}${MEASURE}</body></html>`);

    const chromium = ['--headless', '--no-sandbox', '--disable-gpu', '--hide-scrollbars'];
    const dom = execFileSync('chromium', [...chromium, '--dump-dom', `file://${html}`], { encoding: 'utf8', timeout: 60_000, stdio: ['ignore', 'pipe', 'ignore'] });
    const m = /<pre id="m">([^<]*)<\/pre>/.exec(dom);
    expect(m).not.toBeNull();
    const boxes = JSON.parse((m?.[1] ?? '{}').replaceAll('&quot;', '"')) as Record<string, { x: number; y: number; width: number; height: number; length: number }>;
    for (const name of ['series-target', 'series-actual']) {
      const b = boxes[name];
      expect(b, name).toBeDefined();
      // Three steps up and down: a path with real extent, inside the 900x420 chart.
      expect(b!.width).toBeGreaterThan(100);
      expect(b!.height).toBeGreaterThan(50);
      expect(b!.x).toBeGreaterThanOrEqual(70);
      expect(b!.x + b!.width).toBeLessThanOrEqual(881);
      expect(b!.y + b!.height).toBeLessThanOrEqual(361);
    }

    const png = join(dir, 'timeline.png');
    execFileSync('chromium', [...chromium, `--screenshot=${png}`, '--window-size=900,420', `file://${svgFile}`], { timeout: 60_000, stdio: 'ignore' });
    const bytes = readFileSync(png);
    expect(bytes.subarray(0, 8).toString('hex')).toBe('89504e470d0a1a0a');
    expect(bytes.readUInt32BE(16)).toBe(900); // IHDR width
    expect(bytes.readUInt32BE(20)).toBe(420); // IHDR height
    expect(bytes.length).toBeGreaterThan(5_000);
  }, 120_000);
});
