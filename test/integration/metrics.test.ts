// Prometheus metrics of the real daemon, read over HTTP on loopback and on a
// unix socket while the simulated guest balloons and misbehaves.
import { spawnSync } from 'node:child_process';
import { statSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ControlClient } from '../../src/control/client.js';
import { DAEMON_JS, DaemonProcess } from '../sim/daemon.js';
import { SimGuest } from '../sim/driver.js';

const MiB = 2 ** 20;
const PORT = 40_000 + (process.pid % 20_000);

function scrape(opts: { port: number } | { socketPath: string }): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = request({ ...('port' in opts ? { host: '127.0.0.1', port: opts.port } : { socketPath: opts.socketPath }), path: '/metrics' }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d: string) => { body += d; }).on('end', () => resolve(body));
    });
    req.on('error', reject);
    req.end();
  });
}

/** The value of one sample: metric `name` whose labels include `labels` (the daemon adds vm="..."). */
function value(text: string, name: string, labels: Record<string, string> = {}): number {
  const want = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
  const line = text.split('\n').find((l) => (l.startsWith(`${name}{`) || l.startsWith(`${name} `)) && want.every((w) => l.includes(w)));
  if (!line) throw new Error(`no ${name} ${want.join(',')} in the metrics`);
  return Number(line.slice(line.lastIndexOf(' ') + 1));
}

describe('metrics', () => {
  let daemon: DaemonProcess;
  let guest: SimGuest;

  beforeAll(async () => {
    daemon = await DaemonProcess.start(['--metrics-listen', `127.0.0.1:${PORT}`]);
    guest = await SimGuest.start({ socketPath: daemon.socketPath, ramBytes: 64 * MiB });
    const ctl = await ControlClient.connect(daemon.controlPath);
    await ctl.request({ op: 'set-target', value: '8M', owner: 'test' });
    ctl.close();
    await guest.waitConfigChange();
    await guest.followTarget();
    await guest.tellHost('inflate', [0xfffff0]); // far outside 64 MiB of RAM
  });
  afterAll(async () => {
    guest?.close();
    await daemon?.stop();
  });

  it('counts pages, bytes discarded, bad input by kind and decisions by rule; gauges target and actual', async () => {
    let text = '';
    for (let i = 0; i < 100; i++) {
      text = await scrape({ port: PORT });
      if (value(text, 'vub_discarded_bytes_total') >= 8 * MiB) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(value(text, 'vub_inflated_pages_total', { vm: 'vhost' })).toBe(8 * 256);
    expect(value(text, 'vub_discarded_bytes_total')).toBe(8 * MiB);
    expect(value(text, 'vub_bad_input_total', { kind: 'pfn_outside_ram' })).toBe(1);
    expect(value(text, 'vub_decisions_total', { rule: 'manual-target' })).toBe(1);
    expect(value(text, 'vub_target_bytes')).toBe(8 * MiB);
    expect(value(text, 'vub_actual_bytes')).toBe(8 * MiB);
    expect(text).toMatch(/# TYPE vub_host_pressure_events_total counter/);
    expect(text).toMatch(/# TYPE vub_guest_stat gauge/);
  });

  it('serves on a unix socket (mode 0600) too', async () => {
    const d = await DaemonProcess.start(['--metrics-listen', `unix:${join('/tmp', `vub-metrics-${process.pid}.sock`)}`]);
    try {
      const path = join('/tmp', `vub-metrics-${process.pid}.sock`);
      expect(statSync(path).mode & 0o777).toBe(0o600);
      const text = await scrape({ socketPath: path });
      expect(value(text, 'vub_inflated_pages_total')).toBe(0);
    } finally {
      await d.stop();
    }
  });

  it.each([['0.0.0.0:9101', /loopback/], ['10.1.2.3:9101', /loopback/], ['nonsense', /HOST:PORT/]])('--metrics-listen %s is refused', (listen, message) => {
    const r = spawnSync(process.execPath, [DAEMON_JS, '--socket-path', `/tmp/vub-m-${process.pid}.sock`, '--metrics-listen', listen, '--pressure', 'none'], { encoding: 'utf8', timeout: 15_000 });
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(message);
  });
});
