// Prometheus metrics (prom-client). Totals are read from the device and the
// controller at scrape time, so the hot paths only bump plain numbers.
import { createServer, Server } from 'node:http';
import { chmodSync, existsSync, unlinkSync } from 'node:fs';
import { Counter, Gauge, Registry, Summary } from 'prom-client';
import { BalloonError } from '../errors.js';
import type { DeviceCounters } from '../device/counters.js';
import type { GuestStats } from '../device/stats.js';
import { PAGE } from '../units.js';
import { PRESSURE_TO_CONFIG_CHANGE_METRIC } from './latency.js';

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
}


/** The summary every VM's controller observes into, labelled by VM. */
export function pressureToConfigChangeSummary(): Summary<'vm'> {
  return new Summary({
    name: PRESSURE_TO_CONFIG_CHANGE_METRIC,
    help: 'Host pressure eventfd wake-up (first JS line) to VHOST_USER_BACKEND_CONFIG_CHANGE_MSG sent, for events that changed the target',
    percentiles: [0.5, 0.9, 0.99], labelNames: ['vm'], registers: [],
  });
}

/**
 * One registry for every VM of the daemon: each sample carries the VM's name
 * in the `vm` label, read at scrape time from `vms()`.
 */
/** What the host-wide policy shows per group (the memcg its VMs share). */
export interface GroupMetrics {
  group: string;
  usageBytes: number | null;
  limitBytes: number | null;
  /** The need of the latest host-policy decision, or null before one. */
  needBytes: number | null;
}

export function buildRegistry(vms: () => ReadonlyArray<{ vm: string; src: MetricsSource }>, latency: Summary<'vm'>,
  groups: () => readonly GroupMetrics[] = () => []): Registry {
  const registry = new Registry();
  const perVm = <L extends string>(name: string, help: string, labels: L[], kind: 'counter' | 'gauge',
    fill: (src: MetricsSource, add: (labels: Record<L, string>, v: number) => void) => void) => {
    const labelNames = ['vm', ...labels] as Array<L | 'vm'>;
    const collect = function (this: Counter<L | 'vm'> | Gauge<L | 'vm'>) {
      this.reset();
      for (const { vm, src } of vms()) {
        fill(src, (l, v) => (kind === 'counter' ? (this as Counter<L | 'vm'>).inc({ ...l, vm }, v) : (this as Gauge<L | 'vm'>).set({ ...l, vm }, v)));
      }
    };
    if (kind === 'counter') new Counter({ name, help, labelNames, registers: [registry], collect });
    else new Gauge({ name, help, labelNames, registers: [registry], collect });
  };
  const total = (name: string, help: string, read: (s: MetricsSource) => number) =>
    perVm(name, help, [], 'counter', (src, add) => add({}, read(src)));
  total('vub_inflated_pages_total', 'Pages the guest put in the balloon (4 KiB)', (s) => s.counters().inflatedPages);
  total('vub_deflated_pages_total', 'Pages the guest took back out of the balloon (4 KiB)', (s) => s.counters().deflatedPages);
  total('vub_reported_pages_total', 'Free pages the guest reported (4 KiB)', (s) => s.counters().reportedPages);
  total('vub_discarded_bytes_total', 'Bytes of guest RAM handed back to the host', (s) => s.counters().discardedBytes);
  total('vub_discard_calls_total', 'madvise(MADV_REMOVE) calls', (s) => s.counters().discardCalls);
  total('vub_stats_samples_total', 'Guest memory statistics samples received', (s) => s.counters().statsSamples);
  perVm('vub_bad_input_total', 'Bad guest input by kind', ['kind'], 'counter', (src, add) => {
    for (const [kind, n] of Object.entries(src.counters().badInput)) add({ kind }, n ?? 0);
  });
  perVm('vub_guest_pressure_total', 'Guest pressure signals by source', ['source'], 'counter', (src, add) => {
    for (const [source, n] of Object.entries(src.counters().guestPressure)) add({ source }, n);
  });
  perVm('vub_host_pressure_events_total', 'Host pressure events by source and level', ['source', 'level'], 'counter', (src, add) => {
    for (const [key, n] of src.pressureEvents()) {
      const [source, level] = key.split('/');
      add({ source: source ?? key, level: level ?? '' }, n);
    }
  });
  perVm('vub_decisions_total', 'Policy decisions by rule', ['rule'], 'counter', (src, add) => {
    for (const [rule, n] of src.decisions()) add({ rule }, n);
  });
  registry.registerMetric(latency);
  const gauge = (name: string, help: string, read: (s: MetricsSource) => number) =>
    perVm(name, help, [], 'gauge', (src, add) => add({}, read(src)));
  gauge('vub_target_bytes', 'Balloon target (num_pages) in bytes', (s) => s.targetPages() * PAGE);
  gauge('vub_actual_bytes', 'Balloon size the guest reports (actual) in bytes', (s) => s.actualPages() * PAGE);
  gauge('vub_balloon_bytes', 'Balloon size counted from the inflate/deflate queues, in bytes', (s) => s.balloonPages() * PAGE);
  perVm('vub_guest_stat', 'Latest guest memory statistic (virtio-balloon stats tag, bytes or count)', ['stat'], 'gauge', (src, add) => {
    for (const [stat, v] of Object.entries(src.guestStats() ?? {})) add({ stat }, v ?? 0);
  });
  new Gauge({ name: 'vub_devices', help: 'Balloon devices this daemon serves', registers: [registry], collect() { this.set(vms().length); } });
  const perGroup = (name: string, help: string, read: (g: GroupMetrics) => number | null) => new Gauge({
    name, help, labelNames: ['group'], registers: [registry],
    collect() {
      this.reset();
      for (const g of groups()) {
        const v = read(g);
        if (v !== null) this.set({ group: g.group }, v);
      }
    },
  });
  perGroup('vub_group_usage_bytes', 'Host-wide policy: the group\'s usage (less inactive file cache) at its last reading', (g) => g.usageBytes);
  perGroup('vub_group_limit_bytes', 'Host-wide policy: the group\'s limit at its last reading', (g) => g.limitBytes);
  perGroup('vub_group_need_bytes', 'Host-wide policy: what the group needed back at its latest decision', (g) => g.needBytes);
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
