// Human-readable output for balloonctl: aligned tables and status blocks.
import type { DaemonStatus, DecisionRecord, HostDecisionRecord } from '../control/status.js';
import { formatBytes } from '../units.js';
import type { HostStatus } from '../service/host.js';
import type { VmSummary } from '../service/vm.js';

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
    ['policy', s.params.policy === undefined ? '?' : `${String(s.params.policy)}${s.params.policy === 'host'
      ? ` (weight ${String(s.params.weight)}, reserve ${Number(s.params.reserveBytes) ? mib(Number(s.params.reserveBytes)) : '10 % of RAM'})` : ''}`],
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

const when = (t: string) => t.replace('T', ' ').replace(/\.\d+Z$/, 'Z');
const signed = (b: number) => (b > 0 ? `+${mib(b)}` : b < 0 ? `-${mib(-b)}` : '0');

export function decisionsTable(d: DecisionRecord[]): string {
  const withHost = d.some((x) => x.host);
  const headers = ['time', 'rule', 'event', 'target', ...(withHost ? ['need', 'spare', 'share'] : []), 'reason'];
  return table(headers, d.map((x) => [
    when(x.time), x.rule, x.event,
    x.oldTargetBytes === x.newTargetBytes ? mib(x.newTargetBytes) : `${mib(x.oldTargetBytes)} -> ${mib(x.newTargetBytes)}`,
    ...(withHost ? (x.host ? [mib(x.host.needBytes), x.host.policy === 'host' ? `${mib(x.host.spareBytes)}${x.host.stale ? ' (stale)' : ''}` : '-', signed(x.host.shareBytes)] : ['', '', '']) : []),
    x.reason,
  ]));
}

/** A VM's free memory the host does not back, what of it the balloon gave back, and what of its share is asked for it. */
function unbackedNote(v: HostDecisionRecord['vms'][number]): string {
  if (!v.unbackedBytes) return '';
  const returned = v.returnedBytes ? ` (${mib(v.returnedBytes)} of it given back by the balloon, counted in its weighted share)` : '';
  const what = v.returnedBytes ? 'unbacked' : 'never backed';
  return v.shareUnbackedBytes ? `of the share ${mib(v.shareUnbackedBytes)} for ${mib(v.unbackedBytes)} ${what}${returned}` : `${mib(v.unbackedBytes)} free ${what}${returned}`;
}

/** The host-wide decisions: per decision its need and reason, then each VM's spare and share. */
export function hostDecisionsText(d: HostDecisionRecord[]): string {
  const out: string[] = [];
  for (const x of d) {
    const psi = x.psiSomeAvg10 === null ? '' : `, PSI some avg10 ${x.psiSomeAvg10}%`;
    out.push(`${when(x.time)}  #${x.seq} ${x.policy} ${x.trigger}${x.count > 1 ? ` (x${x.count})` : ''}  ${x.group}: need ${mib(x.needBytes)}`
      + ` (usage ${mib(x.usageBytes)} of ${mib(x.limitBytes)}${x.headroomBytes ? `, headroom ${mib(x.headroomBytes)}` : ''}${psi}`
      + `${x.outstandingBytes ? `, ${mib(x.outstandingBytes)} on the way` : ''})`);
    out.push(`  ${x.reason}`);
    out.push(table(['  VM', 'weight', 'spare', 'of it cache', 'share', 'target', 'note'], x.vms.map((v) => [
      `  ${v.vm}`, String(v.weight), x.policy === 'host' ? mib(v.spareBytes) : '-', x.policy === 'host' ? mib(v.cacheSpareBytes) : '-', signed(v.shareBytes),
      v.oldTargetBytes === v.newTargetBytes ? mib(v.newTargetBytes) : `${mib(v.oldTargetBytes)} -> ${mib(v.newTargetBytes)}`,
      v.excluded ?? (v.stale ? 'stats stale: one step at most' : [unbackedNote(v), v.freshFreeBytes ? `${mib(v.freshFreeBytes)} just freed, not spare yet` : ''].filter(Boolean).join('; ')),
    ])));
  }
  return out.join('\n');
}

/** A VM as `list` shows it: from the host daemon (summary) or its own daemon (status). */
export interface ListRow {
  name: string;
  summary?: VmSummary;
  status?: DaemonStatus;
  error?: string;
}

export function listTable(rows: ListRow[]): string {
  return table(['VM', 'TARGET', 'ACTUAL', 'MODE', 'HOST PRESSURE', 'FRONTEND', 'DAEMON'], rows.map((r) => {
    if (r.summary) {
      const v = r.summary;
      return [r.name, mib(v.targetBytes), mib(v.actualBytes), v.mode, v.pressure, v.connected ? 'connected' : 'waiting', 'host'];
    }
    if (r.status) {
      const s = r.status;
      return [r.name, mib(s.targetBytes), mib(s.actualBytes), s.mode, `${s.pressure.host.events} events`, s.connected ? 'connected' : 'waiting', `pid ${s.pid}`];
    }
    return [r.name, '-', '-', '-', '-', r.error ?? 'unreachable', '-'];
  }));
}

export function hostStatusText(h: HostStatus): string {
  const t = h.totals;
  const lines = [
    `host daemon pid ${h.pid} (${h.version}): ${h.devices} VM${h.devices === 1 ? '' : 's'}, ${h.connected} connected`,
    `guest RAM ${mib(t.guestRamBytes)}, target ${mib(t.targetBytes)}, actual ${mib(t.actualBytes)}, ballooned ${mib(t.balloonBytes)}`,
    ...h.pressure.map((p) => `host pressure: ${p.description} (${p.subscribers} VM${p.subscribers === 1 ? '' : 's'}, ${p.state})`),
    ...(h.policy ?? []).map((g) => `host policy: ${g.group} (${g.vms.join(', ')}): ${g.error ? `cannot read: ${g.error}`
      : g.reading ? `usage ${mib(g.reading.usageBytes)} of ${mib(g.reading.limitBytes)}${g.lastDecision ? `, last need ${mib(g.lastDecision.needBytes)} at ${when(g.lastDecision.time)}` : ''}` : 'not read yet'}`),
  ];
  if (h.vms.length) lines.push('', listTable(h.vms.map((v) => ({ name: v.vm, summary: v }))));
  return lines.join('\n');
}
