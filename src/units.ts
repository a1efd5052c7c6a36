// Memory sizes as operators type them: 512M, 512MiB, 2G, 1.5GiB, 4096K,
// 25% (of guest RAM), or bytes with a B suffix. Binary units throughout,
// as QEMU's -m and libvirt's <memory unit='MiB'> use.
import { BalloonError } from './errors.js';
import { BALLOON_PAGE_SIZE } from './virtio/constants.js';

export const KiB = 2 ** 10;
export const MiB = 2 ** 20;
export const GiB = 2 ** 30;

const UNITS: Record<string, number> = {
  b: 1, k: KiB, kib: KiB, m: MiB, mib: MiB, g: GiB, gib: GiB, t: 2 ** 40, tib: 2 ** 40,
};

export type SizeSpec = { bytes: number } | { percent: number };

export function parseSize(text: string): SizeSpec {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z%]*)\s*$/.exec(text);
  if (!m) {
    throw new BalloonError('EBALLOON_CONFIG', `"${text}" is not a size`, 'use a number with a unit: 512M, 2G, 1.5GiB, or a share of guest RAM: 25%');
  }
  const value = Number(m[1]);
  const unit = m[2]!.toLowerCase();
  if (unit === '%') {
    if (value > 100) throw new BalloonError('EBALLOON_RANGE', `${text} is more than all of guest RAM`, 'use a percentage from 0 to 100');
    return { percent: value };
  }
  if (unit === '') {
    if (value === 0) return { bytes: 0 }; // zero needs no unit
    throw new BalloonError('EBALLOON_CONFIG', `"${text}" has no unit`, `write ${text}M for MiB or ${text}G for GiB`);
  }
  const mult = UNITS[unit];
  if (mult === undefined) {
    throw new BalloonError('EBALLOON_CONFIG', `unknown unit "${m[2]}" in "${text}"`, 'units: K, M, G, T (binary: MiB, GiB also accepted), or %');
  }
  return { bytes: Math.round(value * mult) };
}

/** Resolve a size against guest RAM (needed for percentages). */
export function sizeToBytes(spec: SizeSpec, guestRamBytes: number): number {
  if ('bytes' in spec) return spec.bytes;
  if (guestRamBytes <= 0) {
    throw new BalloonError('EBALLOON_NOT_CONNECTED', 'a percentage needs the guest RAM size, which is known once QEMU has connected', 'give an absolute size such as 512M');
  }
  return Math.round((guestRamBytes * spec.percent) / 100);
}

export function formatBytes(bytes: number): string {
  const abs = Math.abs(bytes);
  if (abs >= GiB) return `${(bytes / GiB).toFixed(abs % GiB === 0 ? 0 : 2)} GiB`;
  if (abs >= MiB) return `${(bytes / MiB).toFixed(abs % MiB === 0 ? 0 : 1)} MiB`;
  if (abs >= KiB) return `${(bytes / KiB).toFixed(0)} KiB`;
  return `${bytes} B`;
}

/** Whole MiB, for decision reasons and chart labels ("32 MiB"). */
export const mibText = (bytes: number): string => `${Math.round(bytes / MiB)} MiB`;

/** virtio-balloon's page: num_pages, actual and PFNs count 4 KiB units. */
export const PAGE = BALLOON_PAGE_SIZE;
export const bytesToPages = (b: number): number => Math.floor(b / PAGE);
export const pagesToBytes = (p: number): number => p * PAGE;
