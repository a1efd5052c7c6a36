// Prometheus metrics (prom-client). Totals are read from the device and the
// controller at scrape time, so the hot paths only bump plain numbers.
import { createServer, Server } from 'node:http';
import { chmodSync, existsSync, unlinkSync } from 'node:fs';
import { Counter, Gauge, Registry, Summary } from 'prom-client';
import { BalloonError } from '../errors.js';
import type { DeviceCounters } from '../device/counters.js';
import type { GuestStats } from '../device/stats.js';

export interface MetricsSource {
  counters(): DeviceCounters;
  targetPages(): number;
  actualPages(): number;
  balloonPages(): number;
  guestStats(): GuestStats | null;
  /** host pressure events: [source, level] -> count */
  pressureEvents(): Map<string, number>;
  /** policy decisions: rule -> count */
  decisions(): Map<string, number>;
  /** Observed where it happens (the controller), so registered as it is. */
  pressureToConfigChange: Summary;
}

const PAGE = 4096;

export function buildRegistry(src: MetricsSource, vm: string): Registry {
  const registry = new Registry();
  registry.setDefaultLabels({ vm });
  const total = (name: string, help: string, read: () => number) =>
    new Counter({ name, help, registers: [registry], collect() { this.reset(); this.inc(read()); } });
  total('vub_inflated_pages_total', 'Pages the guest put in the balloon (4 KiB)', () => src.counters().inflatedPages);
  total('vub_deflated_pages_total', 'Pages the guest took back out of the balloon (4 KiB)', () => src.counters().deflatedPages);
  total('vub_reported_pages_total', 'Free pages the guest reported (4 KiB)', () => src.counters().reportedPages);
  total('vub_discarded_bytes_total', 'Bytes of guest RAM handed back to the host', () => src.counters().discardedBytes);
  total('vub_discard_calls_total', 'madvise(MADV_REMOVE) calls', () => src.counters().discardCalls);
  total('vub_stats_samples_total', 'Guest memory statistics samples received', () => src.counters().statsSamples);

  new Counter({
    name: 'vub_bad_input_total', help: 'Bad guest input by kind', labelNames: ['kind'], registers: [registry],
    collect() {
      this.reset();
      for (const [kind, n] of Object.entries(src.counters().badInput)) this.inc({ kind }, n ?? 0);
    },
  });
  new Counter({
    name: 'vub_guest_pressure_total', help: 'Guest pressure signals by source', labelNames: ['source'], registers: [registry],
    collect() {
      this.reset();
      for (const [source, n] of Object.entries(src.counters().guestPressure)) this.inc({ source }, n);
    },
  });
  new Counter({
    name: 'vub_host_pressure_events_total', help: 'Host pressure events by source and level', labelNames: ['source', 'level'], registers: [registry],
    collect() {
      this.reset();
      for (const [key, n] of src.pressureEvents()) {
        const [source, level] = key.split('/');
        this.inc({ source: source ?? key, level: level ?? '' }, n);
      }
    },
  });
  new Counter({
    name: 'vub_decisions_total', help: 'Policy decisions by rule', labelNames: ['rule'], registers: [registry],
    collect() {
      this.reset();
      for (const [rule, n] of src.decisions()) this.inc({ rule }, n);
    },
  });
  registry.registerMetric(src.pressureToConfigChange);
  const gauge = (name: string, help: string, read: () => number) =>
    new Gauge({ name, help, registers: [registry], collect() { this.set(read()); } });
  gauge('vub_target_bytes', 'Balloon target (num_pages) in bytes', () => src.targetPages() * PAGE);
  gauge('vub_actual_bytes', 'Balloon size the guest reports (actual) in bytes', () => src.actualPages() * PAGE);
  gauge('vub_balloon_bytes', 'Balloon size counted from the inflate/deflate queues, in bytes', () => src.balloonPages() * PAGE);
  new Gauge({
    name: 'vub_guest_stat', help: 'Latest guest memory statistic (virtio-balloon stats tag, bytes or count)', labelNames: ['stat'], registers: [registry],
    collect() {
      this.reset();
      for (const [stat, v] of Object.entries(src.guestStats() ?? {})) this.set({ stat }, v ?? 0);
    },
  });
  return registry;
}

/**
 * Serve /metrics on `listen`: "127.0.0.1:9101", "[::1]:9101", or
 * "unix:/path". Only loopback addresses: metrics are not for the network.
 */
export async function serveMetrics(listen: string, registry: Registry): Promise<Server> {
  const server = createServer((req, res) => {
    if (req.url !== '/metrics') {
      res.writeHead(404).end('try /metrics\n');
      return;
    }
    registry.metrics().then(
      (body) => res.writeHead(200, { 'content-type': registry.contentType }).end(body),
      (err: unknown) => res.writeHead(500).end(String(err)),
    );
  });
  const target = parseListen(listen);
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) => reject(new BalloonError('EBALLOON_SOCKET', `cannot serve metrics on ${listen}: ${err.code ?? err.message}`)));
    if ('path' in target) {
      if (existsSync(target.path)) unlinkSync(target.path);
      server.listen(target.path, () => { chmodSync(target.path, 0o600); resolve(); });
    } else {
      server.listen(target.port, target.host, () => resolve());
    }
  });
  return server;
}

export function parseListen(listen: string): { path: string } | { host: string; port: number } {
  if (listen.startsWith('unix:')) {
    const path = listen.slice(5);
    if (!path.startsWith('/')) throw new BalloonError('EBALLOON_CONFIG', `--metrics-listen ${listen}: the unix socket path must be absolute`);
    return { path };
  }
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(listen);
  const host = m?.[1] ?? m?.[2];
  const port = Number(m?.[3]);
  if (!m || !host || !(port > 0 && port < 65536)) {
    throw new BalloonError('EBALLOON_CONFIG', `--metrics-listen ${listen}: expected HOST:PORT or unix:/PATH`, 'for example 127.0.0.1:9101');
  }
  if (!['127.0.0.1', 'localhost', '::1'].includes(host) && !host.startsWith('127.')) {
    throw new BalloonError('EBALLOON_CONFIG', `--metrics-listen ${listen}: only loopback addresses are allowed`, 'use 127.0.0.1:PORT and scrape through a local agent, or unix:/PATH');
  }
  return { host, port };
}
