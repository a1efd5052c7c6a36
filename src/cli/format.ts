// Human-readable output for balloonctl: aligned tables and status blocks.
import type { DaemonStatus, DecisionRecord } from '../control/status.js';
import { formatBytes } from '../control/units.js';

export function table(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd();
  return [line(headers), ...rows.map(line)].join('\n');
}

const mib = (b: number) => formatBytes(b);

export function statusText(s: DaemonStatus): string {
  const lines: Array<[string, string]> = [
    ['VM', `${s.vm} (daemon pid ${s.pid}, ${s.version})`],
    ['frontend', s.connected ? `connected (${s.features.join(' ')})` : 'not connected'],
    ['guest RAM', s.guestRamBytes ? mib(s.guestRamBytes) : 'unknown until QEMU connects'],
    ['target', mib(s.targetBytes)],
    ['actual', `${mib(s.actualBytes)} (counted from queues: ${mib(s.balloonBytes)})`],
    ['mode', s.mode + (s.hold ? ` (held by ${s.hold.owner} since ${s.hold.sinceTime})` : '')],
    ['host pressure', `${s.pressure.host.source}: ${s.pressure.host.events} events, last ${s.pressure.host.lastEventTime ?? 'never'}`],
    ['guest pressure', s.pressure.guest.inPressure
      ? `yes, until ${s.pressure.guest.untilTime} (last signal: ${s.pressure.guest.lastSignal})`
      : `no (last signal: ${s.pressure.guest.lastSignal ?? 'none'})`],
  ];
  if (s.stats) {
    const v = s.stats.values;
    const avail = v.available_memory !== undefined ? mib(v.available_memory) : '?';
    const total = v.total_memory !== undefined ? mib(v.total_memory) : '?';
    lines.push(['guest memory', `${avail} available of ${total} (sample ${s.stats.time})`]);
  }
  const w = Math.max(...lines.map(([k]) => k.length));
  const out = lines.map(([k, v]) => `${k.padEnd(w)}  ${v}`);
  if (s.decisions.length) {
    out.push('', 'last decisions:', decisionsTable(s.decisions.slice(-5)));
  }
  return out.join('\n');
}

export function decisionsTable(d: DecisionRecord[]): string {
  return table(['time', 'rule', 'event', 'target', 'reason'], d.map((x) => [
    x.time.replace('T', ' ').replace(/\.\d+Z$/, 'Z'), x.rule, x.event,
    x.oldTargetBytes === x.newTargetBytes ? mib(x.newTargetBytes) : `${mib(x.oldTargetBytes)} -> ${mib(x.newTargetBytes)}`,
    x.reason,
  ]));
}

export function listTable(rows: Array<{ name: string; status?: DaemonStatus; error?: string }>): string {
  return table(['VM', 'TARGET', 'ACTUAL', 'MODE', 'HOST PRESSURE', 'GUEST PRESSURE', 'FRONTEND'], rows.map((r) => r.status
    ? [r.name, mib(r.status.targetBytes), mib(r.status.actualBytes), r.status.mode, `${r.status.pressure.host.events} events`,
      r.status.pressure.guest.inPressure ? 'yes' : 'no', r.status.connected ? 'connected' : 'waiting']
    : [r.name, '-', '-', '-', '-', '-', r.error ?? 'unreachable']));
}
