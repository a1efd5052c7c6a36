// An SVG timeline of one VM's balloon: target, actual, guest available
// memory, and pressure events as ticks. Pure: samples in, SVG text out.
import { mibText } from '../units.js';

export interface TimelineSample {
  /** Seconds since the daemon started. */
  t: number;
  targetBytes: number;
  actualBytes: number;
  availableBytes?: number;
}

export interface TimelineMark {
  t: number;
  kind: 'host' | 'guest';
}

const W = 900;
const H = 420;
const M = { left: 70, right: 20, top: 40, bottom: 60 };

const esc = (s: string) => s.replace(/[<>&"]/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;' })[c]!);

export function timelineSvg(title: string, samples: TimelineSample[], marks: TimelineMark[]): string {
  const t0 = Math.min(...samples.map((s) => s.t), ...marks.map((m) => m.t), 0);
  const t1 = Math.max(...samples.map((s) => s.t), ...marks.map((m) => m.t), t0 + 1);
  const yMax = Math.max(1, ...samples.flatMap((s) => [s.targetBytes, s.actualBytes, s.availableBytes ?? 0])) * 1.1;
  const x = (t: number) => M.left + ((t - t0) / (t1 - t0)) * (W - M.left - M.right);
  const y = (b: number) => H - M.bottom - (b / yMax) * (H - M.top - M.bottom);
  const path = (pick: (s: TimelineSample) => number | undefined) => {
    const pts = samples.filter((s) => pick(s) !== undefined).map((s) => `${x(s.t).toFixed(1)},${y(pick(s)!).toFixed(1)}`);
    return pts.length ? `M${pts.join(' L')}` : '';
  };
  const series = [
    { name: 'target', color: '#d62728', d: path((s) => s.targetBytes), dash: '6 3' },
    { name: 'actual', color: '#1f77b4', d: path((s) => s.actualBytes), dash: '' },
    { name: 'guest available', color: '#2ca02c', d: path((s) => s.availableBytes), dash: '' },
  ];
  const mib = mibText;
  const yTicks = Array.from({ length: 5 }, (_, i) => (yMax / 1.1) * (i / 4));
  const xTicks = Array.from({ length: 6 }, (_, i) => t0 + ((t1 - t0) * i) / 5);
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${W / 2}" y="22" text-anchor="middle" font-size="15">${esc(title)}</text>`,
    `<line x1="${M.left}" y1="${H - M.bottom}" x2="${W - M.right}" y2="${H - M.bottom}" stroke="#333"/>`,
    `<line x1="${M.left}" y1="${M.top}" x2="${M.left}" y2="${H - M.bottom}" stroke="#333"/>`,
    ...yTicks.map((b) => `<text x="${M.left - 6}" y="${y(b) + 4}" text-anchor="end">${mib(b)}</text><line x1="${M.left}" y1="${y(b)}" x2="${W - M.right}" y2="${y(b)}" stroke="#eee"/>`),
    ...xTicks.map((t) => `<text x="${x(t)}" y="${H - M.bottom + 16}" text-anchor="middle">${Math.round(t)} s</text>`),
    ...marks.map((m) => `<line class="mark-${m.kind}" x1="${x(m.t).toFixed(1)}" y1="${H - M.bottom}" x2="${x(m.t).toFixed(1)}" y2="${H - M.bottom - 10}" stroke="${m.kind === 'host' ? '#ff7f0e' : '#9467bd'}"/>`),
    ...series.filter((s) => s.d).map((s) => `<path class="series-${s.name.replace(' ', '-')}" d="${s.d}" fill="none" stroke="${s.color}" stroke-width="2"${s.dash ? ` stroke-dasharray="${s.dash}"` : ''}/>`),
    ...series.map((s, i) => `<rect x="${M.left + i * 170}" y="${H - 22}" width="14" height="4" fill="${s.color}"/><text x="${M.left + i * 170 + 20}" y="${H - 16}">${s.name}</text>`),
    `<line x1="${M.left + 510}" y1="${H - 26}" x2="${M.left + 510}" y2="${H - 14}" stroke="#ff7f0e"/><text x="${M.left + 516}" y="${H - 16}">host pressure</text>`,
    `<line x1="${M.left + 630}" y1="${H - 26}" x2="${M.left + 630}" y2="${H - 14}" stroke="#9467bd"/><text x="${M.left + 636}" y="${H - 16}">guest pressure</text>`,
    '</svg>',
  ];
  return parts.join('\n');
}
