#!/usr/bin/env node
// balloonctl: see and steer the vhost-user-balloon daemons on this host.
import { readdirSync, writeFileSync } from 'node:fs';
import { basename } from 'node:path';
import yargs, { type Argv } from 'yargs';
import { hideBin } from 'yargs/helpers';
import { ControlClient } from '../control/client.js';
import type { DaemonStatus, DecisionRecord } from '../control/status.js';
import { parseSize } from '../control/units.js';
import { BalloonError } from '../errors.js';
import { controlSocketPath, runDir, validVmName } from '../paths.js';
import { decisionsTable, listTable, statusText } from './format.js';
import { timelineSvg, TimelineMark, TimelineSample } from './plot.js';

interface Common {
  socket?: string;
  json: boolean;
}

function socketFor(vm: string | undefined, a: Common): string {
  if (a.socket) return a.socket;
  if (!vm) throw new BalloonError('EBALLOON_CONFIG', 'which VM?', 'name it (balloonctl status vm1) or give --socket PATH; balloonctl list shows them');
  if (!validVmName(vm)) throw new BalloonError('EBALLOON_CONFIG', `"${vm}" is not a VM name`, 'names use letters, digits, ".", "_", "+", "-"');
  return controlSocketPath(vm);
}

async function withClient<T>(path: string, fn: (c: ControlClient) => Promise<T>): Promise<T> {
  const c = await ControlClient.connect(path);
  try {
    return await fn(c);
  } finally {
    c.close();
  }
}

function print(a: Common, value: unknown, text: () => string): void {
  process.stdout.write(a.json ? `${JSON.stringify(value, null, 2)}\n` : `${text()}\n`);
}

/** Durations: 60s, 2m, 500ms, or plain seconds. */
function parseDurationMs(text: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(text.trim());
  if (!m) throw new BalloonError('EBALLOON_CONFIG', `"${text}" is not a duration`, 'use 500ms, 60s, 2m or 1h');
  const mult = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[(m[2] ?? 's') as 'ms' | 's' | 'm' | 'h'];
  return Math.round(Number(m[1]) * mult);
}

const vmArg = <T>(y: Argv<T>) => y.positional('vm', { type: 'string', describe: 'VM name (its daemon listens on <run dir>/<vm>.ctl)' });

export async function main(argv: string[]): Promise<void> {
  await yargs(argv)
    .scriptName('balloonctl')
    .usage('$0 <command> [VM] [options]\n\nSee and steer vhost-user-balloon daemons. Daemons are found by VM name in '
      + `${runDir()} (VUB_RUN_DIR overrides), or by --socket PATH.`)
    .option('socket', { type: 'string', describe: 'Control socket of the daemon (instead of a VM name)' })
    .option('json', { type: 'boolean', default: false, describe: 'Machine-readable JSON output' })
    .command('list', 'Every daemon on this host at a glance', (y) => y, async (a) => {
      const dir = runDir();
      let names: string[] = [];
      try {
        names = readdirSync(dir).filter((f) => f.endsWith('.ctl')).map((f) => basename(f, '.ctl')).sort();
      } catch {
        // no run dir: no daemons
      }
      const rows = await Promise.all(names.map(async (name) => {
        try {
          return { name, status: await withClient(controlSocketPath(name), (c) => c.request<DaemonStatus>({ op: 'status' })) };
        } catch (err) {
          return { name, error: err instanceof Error ? err.message.split('\n')[0] : String(err) };
        }
      }));
      print(a, rows, () => (rows.length ? listTable(rows) : `no daemons found in ${dir}`));
    })
    .command('status [vm]', 'Target, actual, mode, pressure, guest stats, last decisions', (y) => vmArg(y), async (a) => {
      const s = await withClient(socketFor(a.vm, a), (c) => c.request<DaemonStatus>({ op: 'status' }));
      print(a, s, () => statusText(s));
    })
    .command('set <vm> <size>', 'Set a manual target balloon size; "release" hands control back to automatic mode', (y) => vmArg(y)
      .positional('size', { type: 'string', demandOption: true, describe: 'Balloon size: 512M, 2G, 25% (of guest RAM), or release' })
      .option('owner', { type: 'string', default: process.env.SUDO_USER ?? process.env.USER ?? 'balloonctl', describe: 'Who holds the manual target (shown in status)' }),
    async (a) => {
      if (a.size !== 'release') parseSize(a.size); // fail early, before connecting
      const r = await withClient(socketFor(a.vm, a), (c) => c.request({ op: 'set-target', value: a.size, owner: a.owner }));
      print(a, r, () => (a.size === 'release' ? 'released: automatic mode decides again' : `target set to ${a.size} (manual, held by ${a.owner})`));
    })
    .command('auto <vm> <state>', 'Turn automatic ballooning on or off at run time', (y) => vmArg(y)
      .positional('state', { choices: ['on', 'off'] as const, demandOption: true }),
    async (a) => {
      const r = await withClient(socketFor(a.vm, a), (c) => c.request({ op: 'auto', enabled: a.state === 'on' }));
      print(a, r, () => `automatic ballooning ${a.state}`);
    })
    .command('tune <vm>', 'Change policy settings at run time', (y) => vmArg(y)
      .option('step', { type: 'string', describe: 'Inflate/deflate step, e.g. 32M' })
      .option('hysteresis', { type: 'string', describe: 'Guest-pressure hysteresis, e.g. 60s' })
      .option('floor', { type: 'string', describe: 'Never shrink the guest below this size, e.g. 512M' })
      .option('ceiling', { type: 'string', describe: 'Largest balloon, e.g. 2G' })
      .option('rate-limit', { type: 'string', describe: 'At most one host-driven step per this interval, e.g. 1s' })
      .option('level', { choices: ['low', 'medium', 'critical'] as const, describe: 'vmpressure level to react to' }),
    async (a) => {
      const params: Record<string, unknown> = {};
      const bytes = (v: string) => {
        const s = parseSize(v);
        if (!('bytes' in s)) throw new BalloonError('EBALLOON_CONFIG', `${v}: give an absolute size here`);
        return s.bytes;
      };
      if (a.step) params.stepBytes = bytes(a.step);
      if (a.hysteresis) params.hysteresisMs = parseDurationMs(a.hysteresis);
      if (a.floor) params.floorBytes = bytes(a.floor);
      if (a.ceiling) params.maxBalloonBytes = bytes(a.ceiling);
      if (a['rate-limit']) params.rateLimitMs = parseDurationMs(a['rate-limit']);
      if (a.level) params.level = a.level;
      if (Object.keys(params).length === 0) throw new BalloonError('EBALLOON_CONFIG', 'nothing to tune', 'give at least one of --step --hysteresis --floor --ceiling --rate-limit --level');
      const r = await withClient(socketFor(a.vm, a), (c) => c.request({ op: 'tune', params }));
      print(a, r, () => `tuned: ${JSON.stringify(r)}`);
    })
    .command('history [vm]', 'Policy decisions with their reasons', (y) => vmArg(y).option('limit', { type: 'number', default: 50 }), async (a) => {
      const r = await withClient(socketFor(a.vm, a), (c) => c.request<{ decisions: DecisionRecord[] }>({ op: 'history', limit: a.limit }));
      print(a, r, () => (r.decisions.length ? decisionsTable(r.decisions) : 'no decisions yet'));
    })
    .command('watch [vm]', 'Stream events (decisions, pressure, balloon changes) until Ctrl-C', (y) => vmArg(y), async (a) => {
      const c = await ControlClient.connect(socketFor(a.vm, a));
      await c.watch((ev) => process.stdout.write(`${JSON.stringify(ev)}\n`));
      await new Promise<void>((resolve) => process.once('SIGINT', () => { c.close(); resolve(); }));
    })
    .command('plot [vm]', 'Write an SVG timeline of target, actual, guest available memory and pressure events', (y) => vmArg(y)
      .option('out', { type: 'string', default: 'balloon-timeline.svg', describe: 'Output file' }),
    async (a) => {
      const r = await withClient(socketFor(a.vm, a), (c) => c.request<{ samples: TimelineSample[]; marks: TimelineMark[]; vm: string }>({ op: 'history', limit: 10_000 }));
      writeFileSync(a.out, timelineSvg(`balloon timeline: ${r.vm}`, r.samples, r.marks));
      print(a, { out: a.out, samples: r.samples.length }, () => `wrote ${a.out} (${r.samples.length} samples)`);
    })
    .completion('completion', 'Print a bash/zsh completion script (source it from your shell rc)')
    .example('$0 list', 'all daemons with target, actual, mode and pressure')
    .example('$0 set vm1 1G', 'balloon 1 GiB out of vm1 and hold it there')
    .example('$0 set vm1 release', 'let automatic mode decide again')
    .example('$0 tune vm1 --step 64M --hysteresis 30s', 'change the policy without a restart')
    .example('$0 status vm1 --json', 'status for scripts')
    .demandCommand(1, 'give a command (balloonctl --help lists them)')
    .strict()
    .showHelpOnFail(false, 'Run balloonctl --help for the commands.')
    .version(false)
    .wrap(Math.min(100, process.stdout.columns || 100))
    .fail((msg, err) => {
      throw err ?? new BalloonError('EBALLOON_CONFIG', msg);
    })
    .parseAsync();
}

main(hideBin(process.argv)).catch((err: unknown) => {
  const e = err instanceof BalloonError ? err : null;
  process.stderr.write(`balloonctl: ${err instanceof Error ? err.message : String(err)}\n`);
  if (!e || e.code === 'EBALLOON_CONFIG') process.stderr.write('Run balloonctl --help for the commands.\n');
  process.exitCode = e?.code === 'EBALLOON_PERMISSION' ? 77 : e?.code === 'EBALLOON_NOT_CONNECTED' ? 3 : 1;
});
