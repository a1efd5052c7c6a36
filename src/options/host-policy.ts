// The host-wide policy's daemon options (--sample-interval, --headroom and
// the constants of docs/policy.md), parsed and range-checked; every error
// names the option and what it allows. Pure: no I/O.
import { BalloonError } from '../errors.js';
import { DEFAULT_GIVE_BACK, DEFAULT_HOST_PARAMS, type GiveBackParams, type HostParams } from '../policy/host.js';
import type { CyclePeak } from '../policy/reuse.js';
import { formatBytes } from '../units.js';
import { bytesOption, durationMs } from './values.js';

export interface HostPolicyOptions {
  sampleIntervalMs: number;
  hostParams: HostParams;
  giveBack: GiveBackParams;
}

/** The options as yargs gives them (strings, as typed). */
export type HostPolicyArgs = Partial<Record<(typeof HOST_POLICY_OPTIONS)[number]['name'], string | number>>;

interface Spec {
  name: string;
  kind: 'duration' | 'percent' | 'size' | 'factor' | 'choice';
  default: string;
  /** kind choice: the words it takes (min and max unused). */
  choices?: readonly string[];
  min: number;
  max: number;
  describe: string;
}

const MiB = 2 ** 20;
const ms = (n: number) => (n === 0 ? '0' : n > 60_000 && n % 60_000 === 0 ? `${n / 60_000}m` : n % 1000 === 0 ? `${n / 1000}s` : `${n}ms`);
/** A size as an operator types it (and parseSize reads it back). */
const size = (b: number) => (b === 0 ? '0' : b % 2 ** 30 === 0 ? `${b / 2 ** 30}G` : `${b / MiB}M`);

/** Each option: its kind, its default (as typed), its range (in ms, %, bytes or a plain factor) and what it does. */
export const HOST_POLICY_OPTIONS = [
  {
    name: 'sample-interval', kind: 'duration', default: '1s', min: 100, max: 60_000,
    describe: 'Read each watched memcg this often (host pressure events also wake the policy at once): catches slow growth and the end of pressure; '
      + 'in 1 s a guest inflates about 12 steps under TCG, so what was asked is mostly done by the next read, which costs tens of microseconds (100ms to 60s)',
  },
  {
    name: 'headroom', kind: 'percent', default: `${DEFAULT_HOST_PARAMS.headroomPercent}%`, min: 0, max: 90,
    describe: `Free memory the host policy keeps below each memcg's limit: N% of the limit (never less than ${formatBytes(DEFAULT_HOST_PARAMS.headroomBytes)}), `
      + 'or a size (e.g. 512M); what is missing is asked back from the VMs (0% to 90%)',
  },
  {
    name: 'horizon', kind: 'duration', default: ms(DEFAULT_HOST_PARAMS.horizonMs), min: 0, max: 60_000,
    describe: 'Look this far ahead at a memcg\'s growth: a group growing at R bytes/s needs R x horizon more back now, '
      + 'so that the guests have inflated before the limit is hit (0 to 60s)',
  },
  {
    name: 'growth-window', kind: 'duration', default: ms(DEFAULT_HOST_PARAMS.growthWindowMs), min: 100, max: 60_000,
    describe: 'Measure a memcg\'s growth against a sample at least this old (pressure events come milliseconds apart) (100ms to 60s)',
  },
  {
    name: 'guest-reserve', kind: 'percent', default: `${DEFAULT_HOST_PARAMS.guestReservePercent}%`, min: 0, max: 90,
    describe: 'A guest keeps at least this share of its RAM available (or its own --reserve, if larger): the host policy never asks for it (0% to 90%)',
  },
  {
    name: 'guest-cache-keep', kind: 'percent', default: `${DEFAULT_HOST_PARAMS.guestCacheKeepPercent}%`, min: 0, max: 90,
    describe: 'Page cache a guest keeps whatever the need, as a share of its RAM: its working set of files (0% to 90%)',
  },
  {
    name: 'guest-horizon', kind: 'duration', default: ms(DEFAULT_HOST_PARAMS.guestHorizonMs), min: 0, max: 600_000,
    describe: 'A guest using up its memory keeps what it would use in this long at its current rate: free memory it is about to use is not spare (0 to 10m)',
  },
  {
    name: 'guest-cycle-window', kind: 'duration', default: ms(DEFAULT_HOST_PARAMS.guestCycleWindowMs), min: 0, max: 600_000,
    describe: 'A guest whose use fell and rose again by --guest-cycle within this window works in rounds: the memory up to its peak of the window '
      + 'is not spare, though it is free between rounds (0 turns it off; 0 to 10m)',
  },
  {
    name: 'guest-cycle', kind: 'size', default: size(DEFAULT_HOST_PARAMS.guestCycleBytes), min: MiB, max: 64 * 2 ** 30,
    describe: 'The fall and the rise of a guest\'s use that make a round (1M to 64G)',
  },
  {
    name: 'guest-cycle-peak', kind: 'choice', default: DEFAULT_HOST_PARAMS.guestCyclePeak, choices: ['window', 'last'], min: 0, max: 0,
    describe: 'Which peak a guest in rounds keeps: window, its highest use in --guest-cycle-window; last, the peak of its last round '
      + '(the most recent rise of --guest-cycle after a fall of it, up to now), so a guest whose rounds shrink has the memory of its larger rounds counted as spare again (window, last)',
  },
  {
    name: 'guest-fresh-free', kind: 'duration', default: ms(DEFAULT_HOST_PARAMS.guestFreshFreeMs), min: 0, max: 600_000,
    describe: 'A guest whose use fell by --guest-cycle or more since its previous stats sample has just freed that memory and may take it back at once '
      + '(a job between rounds): the fall is not spare until a stats sample at least this long after it still shows it free; meanwhile it is '
      + 'taken only for what the other guests\' spare leaves uncovered, when the memcg is within a step of its limit, stalls or reports '
      + 'pressure (0 turns it off; 0 to 10m)',
  },
  {
    name: 'rebalance-after', kind: 'duration', default: ms(DEFAULT_HOST_PARAMS.rebalanceAfterMs), min: 0, max: 3_600_000,
    describe: 'Once the need is met and nothing is on the way, the VM whose balloon is furthest ahead of its weighted share of all the '
      + 'balloons of its memcg hands steps (at most --give-back-step per decision) to the one furthest behind that can spare them, when the two '
      + 'are 1.5 steps or more off together, after the imbalance has lasted this long (for instance: its memory was not spare yet when the need came, and the others gave in its place; 0 turns it off; 0 to 1h)',
  },
  {
    name: 'stall-psi', kind: 'percent', default: `${DEFAULT_HOST_PARAMS.stallPercent}%`, min: 0, max: 100,
    describe: 'A memcg whose PSI memory "some avg10" reaches this stalls, whatever its usage says: it needs at least --stall-need back '
      + 'and gets nothing given back (0% turns it off; 0% to 100%)',
  },
  {
    name: 'stall-need', kind: 'size', default: size(DEFAULT_HOST_PARAMS.stallNeedBytes), min: 0, max: 64 * 2 ** 30,
    describe: 'What a stalling memcg asks back at least (0 to 64G)',
  },
  {
    name: 'give-back-room', kind: 'factor', default: String(DEFAULT_GIVE_BACK.roomFactor), min: 1, max: 100,
    describe: 'Balloons shrink once a memcg has had this many times its headroom free for --give-back-after (1 to 100)',
  },
  {
    name: 'give-back-after', kind: 'duration', default: ms(DEFAULT_GIVE_BACK.afterMs), min: 1000, max: 3_600_000,
    describe: 'How long a memcg must have had that room before balloons shrink (1s to 1h)',
  },
  {
    name: 'give-back-step', kind: 'size', default: size(DEFAULT_GIVE_BACK.stepBytes), min: MiB, max: 64 * 2 ** 30,
    describe: 'At most this much comes back per sample, all VMs of a memcg together: balloons shrink gradually (1M to 64G)',
  },
] as const satisfies readonly Spec[];

function rangeText(s: Spec): string {
  switch (s.kind) {
    case 'duration': return `${ms(s.min)} to ${ms(s.max)}`;
    case 'percent': return s.name === 'headroom' ? `${s.min}% to ${s.max}% of the memcg limit, or a size such as 512M` : `${s.min}% to ${s.max}%`;
    case 'size': return `${size(s.min)} to ${size(s.max)}`;
    case 'factor': return `${s.min} to ${s.max}`;
    case 'choice': return (s.choices ?? []).join(', ');
  }
}

/** One option's value in its unit (ms, %, bytes, factor), range-checked. */
function valueOf(s: Spec, raw: string | number | undefined): number {
  const text = String(raw ?? s.default).trim();
  const hint = `allowed: ${rangeText(s)} (default ${s.default})`;
  let v: number;
  switch (s.kind) {
    case 'duration':
      v = durationMs(s.name, text);
      break;
    case 'size':
      v = text === '0' ? 0 : bytesOption(s.name, text);
      break;
    case 'percent': {
      const m = /^(\d+(?:\.\d+)?)%?$/.exec(text);
      if (!m) throw new BalloonError('EBALLOON_CONFIG', `--${s.name} ${text}: not a percentage`, `${hint}, e.g. 10%`);
      v = Number(m[1]);
      break;
    }
    case 'choice':
      throw new Error(`--${s.name} takes a word: choiceOf()`);
    case 'factor':
      v = Number(text);
      if (!Number.isFinite(v) || text === '') throw new BalloonError('EBALLOON_CONFIG', `--${s.name} ${text}: not a number`, hint);
      break;
  }
  if (v < s.min || v > s.max) throw new BalloonError('EBALLOON_CONFIG', `--${s.name} ${text} is out of range`, hint);
  return v;
}

/** A choice option's word, checked against its choices. */
function choiceOf(s: Spec, raw: string | number | undefined): string {
  const text = String(raw ?? s.default).trim();
  if (!(s.choices ?? []).includes(text)) throw new BalloonError('EBALLOON_CONFIG', `--${s.name} ${text}: not one of ${rangeText(s)}`, `allowed: ${rangeText(s)} (default ${s.default})`);
  return text;
}

type OptionName = (typeof HOST_POLICY_OPTIONS)[number]['name'];

/** The options for yargs: strings as typed, defaults shown in --help. */
export function hostPolicyYargs(): Record<OptionName, { type: 'string'; default: string; describe: string }> {
  return Object.fromEntries(HOST_POLICY_OPTIONS.map((o) => [o.name, { type: 'string', default: o.default, describe: o.describe }])) as
    Record<OptionName, { type: 'string'; default: string; describe: string }>;
}

const spec = (name: (typeof HOST_POLICY_OPTIONS)[number]['name']): Spec => HOST_POLICY_OPTIONS.find((s) => s.name === name)!;

export function parseHostPolicy(a: HostPolicyArgs): HostPolicyOptions {
  const get = (name: (typeof HOST_POLICY_OPTIONS)[number]['name']) => valueOf(spec(name), a[name]);
  // --headroom is a share of the limit or a size.
  const headroomText = String(a.headroom ?? spec('headroom').default).trim();
  let headroom: Pick<HostParams, 'headroomPercent' | 'headroomBytes'>;
  if (/%$/.test(headroomText)) {
    headroom = { headroomPercent: valueOf(spec('headroom'), headroomText), headroomBytes: DEFAULT_HOST_PARAMS.headroomBytes };
  } else {
    let bytes: number;
    try {
      bytes = bytesOption('headroom', headroomText);
    } catch (err) {
      throw new BalloonError('EBALLOON_CONFIG', (err as Error).message.split('\n')[0]!, 'give a share of the memcg limit (10%) or a size (512M)');
    }
    headroom = { headroomPercent: 0, headroomBytes: bytes };
  }
  return {
    sampleIntervalMs: get('sample-interval'),
    hostParams: {
      ...headroom,
      horizonMs: get('horizon'),
      growthWindowMs: get('growth-window'),
      guestReservePercent: get('guest-reserve'),
      guestCacheKeepPercent: get('guest-cache-keep'),
      guestHorizonMs: get('guest-horizon'),
      guestCycleWindowMs: get('guest-cycle-window'),
      guestCycleBytes: get('guest-cycle'),
      guestCyclePeak: choiceOf(spec('guest-cycle-peak'), a['guest-cycle-peak']) as CyclePeak,
      guestFreshFreeMs: get('guest-fresh-free'),
      rebalanceAfterMs: get('rebalance-after'),
      stallPercent: get('stall-psi'),
      stallNeedBytes: get('stall-need'),
    },
    giveBack: { roomFactor: get('give-back-room'), afterMs: get('give-back-after'), stepBytes: get('give-back-step') },
  };
}
