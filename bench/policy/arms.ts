// Arms of the policy benchmark, as data: which balloon (QEMU's stock
// virtio-balloon, or our daemon), extra daemon flags, free page reporting.
// Pure: no I/O.

export interface Arm {
  name: string;
  /** vanilla: stock `-device virtio-balloon-pci`, no daemon; ours: one `--host` daemon for every VM of the run. */
  balloon: 'vanilla' | 'ours';
  /** Daemon flags; splitDaemonArgs() puts device options in each VM's config file, the rest on `--host`'s command line. */
  daemonArgs: string[];
  freePageReporting: boolean;
}

const arm = (name: string, balloon: Arm['balloon'], freePageReporting: boolean, daemonArgs: string[] = []): Arm =>
  ({ name, balloon, daemonArgs, freePageReporting });

export const ARMS: Readonly<Record<string, Arm>> = Object.freeze({
  vanilla: arm('vanilla', 'vanilla', false),
  'vanilla-reporting': arm('vanilla-reporting', 'vanilla', true),
  // The daemon's defaults (the default policy), reporting off: the balloon alone.
  ours: arm('ours', 'ours', false),
  'ours-reporting': arm('ours-reporting', 'ours', true),
  // The defaults with the rule for guests in rounds (docs/policy-bench/2026-12-01-rounds): the window's peak, or the last round's.
  'ours-window': arm('ours-window', 'ours', false, ['--guest-cycle-window', '30s']),
  'ours-last': arm('ours-last', 'ours', false, ['--guest-cycle-window', '30s', '--guest-cycle-peak', 'last']),
  // The last round's peak does not keep an older, larger round's: a longer window sees more of a guest's rounds at no cost to a shrinking one.
  // Stats every second: a guest's short gaps between rounds are seen (at 5 s most are missed).
  'ours-1s': arm('ours-1s', 'ours', false, ['--stats-interval', '1']),
  'ours-last-1s': arm('ours-last-1s', 'ours', false, ['--stats-interval', '1', '--guest-cycle-window', '30s', '--guest-cycle-peak', 'last']),
  'ours-last-60s': arm('ours-last-60s', 'ours', false, ['--guest-cycle-window', '60s', '--guest-cycle-peak', 'last']),
  // A fall of a guest's use by 64 MiB is not spare until a sample 2 s (5 s) later still shows it free (docs/policy-bench/2026-12-02-fresh-free).
  'ours-fresh2s': arm('ours-fresh2s', 'ours', false, ['--guest-fresh-free', '2s']),
  'ours-fresh5s': arm('ours-fresh5s', 'ours', false, ['--guest-fresh-free', '5s']),
  // The defaults less one rule each: memory just freed counts as spare at once; no rebalance toward the weights (docs/policy-bench/2026-12-02-defaults).
  'ours-nofresh': arm('ours-nofresh', 'ours', false, ['--guest-fresh-free', '0']),
  'ours-norebalance': arm('ours-norebalance', 'ours', false, ['--rebalance-after', '0']),
  seed: arm('seed', 'ours', false, ['--policy', 'seed']),
  mom: arm('mom', 'ours', false, ['--policy', 'mom']),
  proxmox: arm('proxmox', 'ours', false, ['--policy', 'proxmox']),
});

/** How the daemon's device options look: their names, and which take no value. */
export interface OptionTable { names: ReadonlySet<string>; booleans: ReadonlySet<string> }

export type ConfigValue = string | number | boolean;

/**
 * Flags to where they go under `--host`: device options (per VM) become
 * config-file keys, the others stay host flags. A flag the table does not know
 * takes the next word as its value unless that is a flag too.
 */
export function splitDaemonArgs(args: readonly string[], t: OptionTable): { hostArgs: string[]; vmOptions: Record<string, ConfigValue> } {
  const hostArgs: string[] = [];
  const vmOptions: Record<string, ConfigValue> = {};
  for (let i = 0; i < args.length; i++) {
    const a = args[i] as string;
    if (!a.startsWith('--')) throw new RangeError(`daemon argument '${a}' is not a --flag (or the value of one)`);
    const eq = a.indexOf('=');
    let name = a.slice(2, eq < 0 ? undefined : eq);
    let value: ConfigValue | undefined = eq < 0 ? undefined : a.slice(eq + 1);
    const negated = name.startsWith('no-') && (t.booleans.has(name.slice(3)) || !t.names.has(name));
    if (negated) name = name.slice(3);
    const isBool = t.booleans.has(name) || negated;
    const next = args[i + 1];
    if (value === undefined && !isBool && next !== undefined && !next.startsWith('--')) { value = next; i++; }
    if (!t.names.has(name)) {
      hostArgs.push(negated ? `--no-${name}` : `--${name}`, ...(value === undefined ? [] : [String(value)]));
      continue;
    }
    if (isBool) vmOptions[name] = value === undefined ? !negated : value !== 'false';
    else if (value === undefined) throw new RangeError(`daemon option --${name} needs a value`);
    else vmOptions[name] = /^-?\d+(\.\d+)?$/.test(String(value)) && !/^0\d/.test(String(value)) ? Number(value) : value;
  }
  return { hostArgs, vmOptions };
}

/** Flags of `args` that the daemon's --help does not list (e.g. --policy before it lands). */
export function unknownFlags(args: readonly string[], helpText: string): string[] {
  const listed = new Set([...helpText.matchAll(/--(?:\[no-\])?([a-z][a-z0-9-]*)/g)].map((m) => m[1] as string));
  return args.filter((a) => a.startsWith('--')).map((a) => a.slice(2).split('=')[0] as string)
    .map((n) => (listed.has(n) || !n.startsWith('no-') ? n : n.slice(3))).filter((n) => !listed.has(n));
}

/** Arms by name, in the order given; an unknown name is an error that lists the known ones. */
export function pickArms(list: string): Arm[] {
  return list.split(',').filter(Boolean).map((n) => {
    const a = ARMS[n];
    if (!a) throw new RangeError(`unknown arm '${n}' (${Object.keys(ARMS).join(', ')})`);
    return a;
  });
}

/** --runs-for A=N,...: runs per arm instead of --runs; every A must be one of `arms`. */
export function parseRunsFor(text: string, arms: readonly string[]): Map<string, number> {
  const out = new Map<string, number>();
  for (const kv of text.split(',').filter(Boolean)) {
    const [a, n] = kv.split('=');
    if (!a || !arms.includes(a)) throw new RangeError(`--runs-for ${kv}: ${a} is not one of --arms (${arms.join(', ')})`);
    if (!Number.isInteger(Number(n)) || Number(n) < 1) throw new RangeError(`--runs-for ${kv}: expected ARM=N with N a whole number >= 1`);
    out.set(a, Number(n));
  }
  return out;
}

/**
 * Paired order: run r of every arm before run r + 1 of any, so arms share the
 * machine's noise. runs: the same for every arm, or per arm (an arm with fewer
 * runs drops out of the later rounds).
 */
export function pairedOrder<T>(arms: readonly T[], runs: number | ((arm: T) => number)): Array<{ arm: T; run: number }> {
  const count = typeof runs === 'number' ? () => runs : runs;
  const out: Array<{ arm: T; run: number }> = [];
  const most = Math.max(0, ...arms.map(count));
  for (let run = 1; run <= most; run++) for (const a of arms) if (run <= count(a)) out.push({ arm: a, run });
  return out;
}
