// The options of one VM's balloon device: policy, guest pressure from stats,
// host pressure, device features. One table for the command line, config
// files (--config, the host's config directory) and `balloonctl add`: an
// options object is turned into arguments and parsed by the same yargs, so
// every source gets the same defaults, checks and messages.
import yargs, { type Argv } from 'yargs';
import { BalloonError } from '../errors.js';
import { DEFAULT_PARAMS, mergeParams, POLICY_NAMES, type PolicyName, type PolicyParams } from '../policy/params.js';
import type { PressureConfig } from '../pressure/detect.js';
import { DEFAULT_PSI_TRIGGER, parsePsiTrigger, psiTriggerText } from '../pressure/psi.js';
import { VMPRESSURE_LEVELS, VMPRESSURE_MODES } from '../pressure/types.js';
import { DEFAULT_MESSAGE_VQ_BIT, MESSAGE_VQ_BIT_MAX, MESSAGE_VQ_BIT_MIN } from '../virtio/constants.js';
import { type FeatureChoice, validMessageVqBit } from '../virtio/features.js';
import { bytesOption, bytesOrZero, closest, countOption, durationMs, withOptionNames } from './values.js';

const POLICY = 'Policy (docs/policy.md explains each default):';
const STATS = 'Guest pressure from the stats queue (stock guests have no message queue; 0 turns a signal off):';
const HOST = 'Host pressure:';
const DEVICE = 'Device:';

export const DEVICE_OPTIONS = {
  policy: {
    group: POLICY, type: 'string', default: 'host',
    describe: 'What moves the balloon on host pressure: host = the host-wide policy (how much the memcg needs back, split among its VMs by what each can spare and --weight; guest pressure gives back the guest\'s shortfall at once); seed = the source design (+--step per host event, no rate limit, no waiting, cancellation, --hysteresis); mom, proxmox = the oVirt MOM and Proxmox auto-ballooning algorithms, as baselines',
  },
  weight: { group: POLICY, type: 'number', default: DEFAULT_PARAMS.weight, describe: 'Host policy: this VM\'s share of what its memcg needs back, relative to the other VMs there (weight x spare); 0 = never asked. Proxmox: shares = 1000 / weight (more shares keep more memory there), so a larger weight gives more under every policy' },
  reserve: { group: POLICY, type: 'string', default: '0', describe: 'Host policy: memory the guest keeps available whatever the host needs (0: 10 % of its RAM; the larger applies); below it, the guest gets its shortfall back at once' },
  auto: { group: POLICY, type: 'boolean', default: true, describe: 'Automatic ballooning; --no-auto starts with only manual targets (balloonctl auto VM on turns it on)' },
  step: { group: POLICY, type: 'string', default: '32M', describe: 'Balloon change per host-pressure event and per guest-pressure deflate; the source design\'s value, about 85 ms of inflation under TCG' },
  hysteresis: { group: POLICY, type: 'string', default: '60s', describe: 'After guest pressure, ignore host pressure this long; the source design\'s value, about 12 stats samples' },
  floor: { group: POLICY, type: 'string', default: '0', describe: 'Never balloon the guest below this size (0: no floor, as the daemon cannot know the working set; set one in production)' },
  'max-balloon': { group: POLICY, type: 'string', default: '0', describe: 'Largest balloon (0: guest RAM minus the floor)' },
  'rate-limit': { group: POLICY, type: 'string', describe: '--policy seed: at most one host-driven step per interval, so a storm (~85 vmpressure events/s measured) is one step (default 0: every event steps, as the source design did; 1s is this project\'s fix)' },
  'wait-for-guest': { group: POLICY, type: 'boolean', describe: '--policy seed: step again only once the guest is within 256 pages of the last target, so a guest that cannot inflate is not pushed further (default off, as the source design)' },
  'stats-available-percent': { group: STATS, type: 'number', default: DEFAULT_PARAMS.stats.availablePercent, describe: 'MemAvailable (tag 6) under this % of MemTotal: the guest is short of memory' },
  'stats-available': { group: STATS, type: 'string', default: '0', describe: 'MemAvailable under this size (the larger threshold applies); for large guests, with a lower percentage' },
  'stats-swap-in': { group: STATS, type: 'string', default: '4M', describe: 'Swap-in (tag 0) grew this much since the last sample: the guest fetches back pages it needs' },
  'stats-major-faults': { group: STATS, type: 'number', default: DEFAULT_PARAMS.stats.majorFaults, describe: 'Major faults (tag 2) grew this much since the last sample; file I/O counts too, so raise it for I/O-heavy guests' },
  'stats-stalls': { group: STATS, type: 'number', default: DEFAULT_PARAMS.stats.stalls, describe: 'Allocation stalls (tag 11) grew this much; inflating causes a few, so 1 would cancel most inflations' },
  'stats-direct-reclaim': { group: STATS, type: 'string', default: '64M', describe: 'Direct reclaim (tag 15, bytes) grew this much since the last sample' },
  'stats-oom-kills': { group: STATS, type: 'number', default: DEFAULT_PARAMS.stats.oomKills, describe: 'The guest OOM killer (tag 10) ran this many times since the last sample' },
  'stats-max-sample-gap': { group: STATS, type: 'string', default: '120s', describe: 'Growth is not compared with a sample older than this (a paused guest is no pressure)' },
  pressure: { group: HOST, choices: ['auto', 'vmpressure', 'psi', 'none'] as const, default: 'auto' as const, describe: 'Source: cgroup v1 vmpressure, cgroup v2 / system PSI, or none (auto: v1 if mounted, else PSI)' },
  memcg: { group: HOST, type: 'string', describe: 'Memory cgroup to watch (default: the root v1 memcg, /sys/fs/cgroup/memory, as in the source design; on cgroup v2-only hosts system-wide PSI, /proc/pressure/memory; in production the VM\'s own or its parent\'s, e.g. machine.slice). VMs watching the same memcg share one subscription' },
  'pressure-level': { group: HOST, choices: VMPRESSURE_LEVELS, default: 'low' as const, describe: 'vmpressure level: low = reclaim started, medium = swapping, critical = about to OOM' },
  'pressure-mode': { group: HOST, choices: VMPRESSURE_MODES, describe: 'vmpressure propagation mode (unset: the kernel\'s "default"); on a parent memcg use hierarchy, or listeners below it take the events' },
  'psi-trigger': { group: HOST, type: 'string', default: psiTriggerText(DEFAULT_PSI_TRIGGER), describe: 'PSI trigger "<some|full> <stall us> <window us>": 100 ms of memory stall in 2 s; the window must be a multiple of 2 s without CAP_SYS_RESOURCE' },
  discard: {
    group: DEVICE, choices: ['deferred', 'immediate'] as const, default: 'deferred' as const,
    describe: 'deferred: acknowledge inflations at once and discard them, merged, on a thread of the daemon (needs MUST_TELL_HOST, which Linux negotiates; deflated pages are never discarded); immediate: discard on the event loop before every acknowledgement',
  },
  'shmem-huge-discard': {
    group: DEVICE, choices: ['any', 'whole'] as const, default: 'any' as const,
    describe: 'Guest RAM on shmem with transparent huge pages (shmem_enabled=always or advise): any = discard every ballooned 4 KiB page (frees all of it; a huge page the balloon covers only in part is split); whole = discard only whole 2 MiB pages (no split; a partly ballooned huge page frees nothing). hugetlbfs RAM is always discarded in whole huge pages (docs/huge-pages.md)',
  },
  'stats-interval': { group: DEVICE, type: 'number', default: 5, describe: 'Seconds between guest memory-statistics requests (0 = never); 5 s gives ~12 samples per hysteresis period for stats-derived guest pressure' },
  'message-vq-bit': {
    group: DEVICE, type: 'string', default: String(DEFAULT_MESSAGE_VQ_BIT),
    describe: `Feature bit of the message virtqueue (${MESSAGE_VQ_BIT_MIN}-${MESSAGE_VQ_BIT_MAX}), or "off"; must match the guest driver (QEMU passes it through)`,
  },
  'stats-vq': { group: DEVICE, type: 'boolean', default: true, describe: 'Offer VIRTIO_BALLOON_F_STATS_VQ' },
  'deflate-on-oom': { group: DEVICE, type: 'boolean', default: true, describe: 'Offer VIRTIO_BALLOON_F_DEFLATE_ON_OOM' },
  'page-reporting': { group: DEVICE, type: 'boolean', default: true, describe: 'Offer VIRTIO_BALLOON_F_PAGE_REPORTING (free page reporting)' },
} as const;

export type DeviceOptionName = keyof typeof DEVICE_OPTIONS;
export const DEVICE_OPTION_NAMES = Object.keys(DEVICE_OPTIONS) as DeviceOptionName[];

/** Add the device options to a yargs parser (the daemon's command line). */
export function withDeviceOptions<T>(y: Argv<T>) {
  return y.options(DEVICE_OPTIONS);
}

type DeviceArgs = ReturnType<ReturnType<typeof withDeviceOptions>['parseSync']>;

/** What one VM's device runs with. */
export interface DeviceSettings {
  params: PolicyParams;
  /** Host pressure as asked for; planPressure() resolves it against this host. */
  pressure: PressureConfig;
  device: { statsIntervalMs: number; discard: 'deferred' | 'immediate'; shmemHugeDiscard: 'any' | 'whole'; features: FeatureChoice };
}

/** --policy NAME, with a did-you-mean for a near miss. */
export function policyOption(text: unknown): PolicyName {
  const name = String(text);
  if ((POLICY_NAMES as readonly string[]).includes(name)) return name as PolicyName;
  const near = closest(name, POLICY_NAMES);
  throw new BalloonError('EBALLOON_CONFIG', `--policy ${JSON.stringify(name)} is not a policy`,
    `${near ? `did you mean "${near}"? ` : ''}use one of ${POLICY_NAMES.join(', ')} (host is the default)`);
}

/** Parsed arguments to settings; every error names its option. */
export function settingsFromArgs(a: DeviceArgs): DeviceSettings {
  if (!(a['stats-interval'] >= 0)) throw new BalloonError('EBALLOON_CONFIG', `--stats-interval ${a['stats-interval']}: expected seconds >= 0`);
  const bit = a['message-vq-bit'];
  if (bit !== 'off' && !validMessageVqBit(Number(bit))) {
    throw new BalloonError('EBALLOON_CONFIG', `--message-vq-bit ${bit}: expected ${MESSAGE_VQ_BIT_MIN}-${MESSAGE_VQ_BIT_MAX} or "off"`, 'bits 0-5 belong to upstream features');
  }
  const policy = policyOption(a.policy);
  // The seed runs as the source design unless told otherwise; the fixes
  // (rate limit, wait for the guest) only matter to the per-event policy.
  const seed = policy === 'seed';
  const params = withOptionNames(() => mergeParams(DEFAULT_PARAMS, {
    policy,
    weight: countOption('weight', 'weight', a.weight),
    reserveBytes: bytesOrZero('reserve', a.reserve),
    stepBytes: bytesOption('step', a.step),
    hysteresisMs: durationMs('hysteresis', a.hysteresis),
    floorBytes: bytesOrZero('floor', a.floor),
    maxBalloonBytes: bytesOrZero('max-balloon', a['max-balloon']),
    rateLimitMs: a['rate-limit'] === undefined ? (seed ? 0 : DEFAULT_PARAMS.rateLimitMs) : durationMs('rate-limit', a['rate-limit']),
    enabled: a.auto,
    waitForGuest: a['wait-for-guest'] ?? (seed ? false : DEFAULT_PARAMS.waitForGuest),
    stats: {
      availablePercent: countOption('stats-available-percent', 'stats.availablePercent', a['stats-available-percent']),
      availableBytes: bytesOrZero('stats-available', a['stats-available']),
      swapInBytes: bytesOrZero('stats-swap-in', a['stats-swap-in']),
      majorFaults: countOption('stats-major-faults', 'stats.majorFaults', a['stats-major-faults']),
      stalls: countOption('stats-stalls', 'stats.stalls', a['stats-stalls']),
      directReclaimBytes: bytesOrZero('stats-direct-reclaim', a['stats-direct-reclaim']),
      oomKills: countOption('stats-oom-kills', 'stats.oomKills', a['stats-oom-kills']),
      maxSampleGapMs: durationMs('stats-max-sample-gap', a['stats-max-sample-gap']),
    },
  }));
  let psiTrigger;
  try {
    psiTrigger = parsePsiTrigger(a['psi-trigger']);
  } catch (err) {
    const e = err as BalloonError;
    throw new BalloonError('EBALLOON_CONFIG', `--psi-trigger ${a['psi-trigger']}: ${e.message.split('\n')[0]}`, e.hint);
  }
  return {
    params,
    pressure: {
      kind: a.pressure, level: a['pressure-level'], psiTrigger,
      ...(a.memcg ? { memcg: a.memcg } : {}), ...(a['pressure-mode'] ? { mode: a['pressure-mode'] } : {}),
    },
    device: {
      statsIntervalMs: Math.round(a['stats-interval'] * 1000),
      discard: a.discard,
      shmemHugeDiscard: a['shmem-huge-discard'],
      features: { messageVqBit: bit === 'off' ? null : Number(bit), stats: a['stats-vq'], deflateOnOom: a['deflate-on-oom'], pageReporting: a['page-reporting'] },
    },
  };
}

/**
 * An options object (keys: the long option names) to settings, through the
 * same parser as the command line. `where` names the source in errors
 * ("config file /etc/...", "balloonctl add vm1").
 */
export function parseDeviceOptions(options: Record<string, unknown>, where: string): DeviceSettings {
  const argv: string[] = [];
  for (const [key, value] of Object.entries(options)) {
    if (!(DEVICE_OPTION_NAMES as string[]).includes(key)) {
      const near = closest(key, DEVICE_OPTION_NAMES);
      throw new BalloonError('EBALLOON_CONFIG', `${where}: unknown option "${key}"`,
        near ? `did you mean "${near}"? (vhost-user-balloon --help lists the options)` : 'vhost-user-balloon --help lists the options');
    }
    if (typeof value === 'boolean') argv.push(value ? `--${key}` : `--no-${key}`);
    else if (typeof value === 'string' || typeof value === 'number') argv.push(`--${key}`, String(value));
    else throw new BalloonError('EBALLOON_CONFIG', `${where}: "${key}" must be a string, a number or true/false`);
  }
  let parsed: DeviceArgs;
  try {
    parsed = withDeviceOptions(yargs(argv)).strict().exitProcess(false)
      .fail((msg, err) => { throw err ?? new BalloonError('EBALLOON_CONFIG', msg); })
      .parseSync();
  } catch (err) {
    if (err instanceof BalloonError) throw new BalloonError(err.code, `${where}: ${err.message.split('\n')[0]}`, err.hint);
    throw new BalloonError('EBALLOON_CONFIG', `${where}: ${(err as Error).message}`);
  }
  try {
    return settingsFromArgs(parsed);
  } catch (err) {
    if (!(err instanceof BalloonError)) throw err;
    throw new BalloonError(err.code, `${where}: ${err.message.split('\n')[0]}`, err.hint);
  }
}
