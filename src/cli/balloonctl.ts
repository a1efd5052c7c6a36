#!/usr/bin/env node
// balloonctl: see and steer the vhost-user-balloon daemons on this host.
import { existsSync, readdirSync, writeFileSync } from 'node:fs';
import { basename, isAbsolute, resolve } from 'node:path';
import yargs, { type Argv, type Options } from 'yargs';
import { hideBin } from 'yargs/helpers';
import { ControlClient } from '../control/client.js';
import type { DaemonStatus, DecisionRecord, HostDecisionRecord } from '../control/status.js';
import { parseSize } from '../units.js';
import { BalloonError } from '../errors.js';
import { controlSocketPath, hostControlSocket, runDir, validVmName } from '../paths.js';
import { decisionsTable, hostDecisionsText, hostStatusText, listTable, statusText, type ListRow } from './format.js';
import type { HostStatus } from '../service/host.js';
import type { VmSummary } from '../service/vm.js';
import { DEVICE_OPTION_NAMES, DEVICE_OPTIONS, policyOption } from '../options/device.js';
import { closest } from '../options/values.js';
import { timelineSvg, TimelineMark, TimelineSample } from './plot.js';

interface Common {
  socket?: string;
  'control-socket'?: string;
  json: boolean;
}

/** The daemon's device options, without their defaults: `add` sends only those given. */
const DEVICE_FLAGS: Record<string, Options> = Object.fromEntries(Object.entries(DEVICE_OPTIONS).map(([k, spec]) => {
  const { default: _default, group: _group, ...o } = spec as Options;
  return [k, { ...o, group: 'Device options (vhost-user-balloon --help):' }];
}));

/**
 * Where a request for `vm` goes: --socket, else the host daemon's control
 * socket, else the single-VM daemon's VM.ctl. Per-VM requests carry the
 * VM's name either way.
 */
function socketFor(vm: string | undefined, a: Common): string {
  if (a['control-socket']) return a['control-socket'];
  if (a.socket) return a.socket;
  if (vm !== undefined && !validVmName(vm)) throw new BalloonError('EBALLOON_CONFIG', `"${vm}" is not a VM name`, 'names use letters, digits, ".", "_", "+", "-"');
  const host = hostControlSocket();
  if (existsSync(host)) return host;
  if (!vm) {
    throw new BalloonError('EBALLOON_NOT_CONNECTED', `no host daemon: ${host} does not exist`,
      'start it (systemctl start vhost-user-balloon, or vhost-user-balloon --host), name a VM served by its own daemon, or give --socket PATH');
  }
  return controlSocketPath(vm);
}

/** Per-VM requests name the VM when it is known. */
const forVm = <T extends object>(vm: string | undefined, req: T): T => (vm ? { ...req, vm } : req);

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

const vmArg = <T>(y: Argv<T>) => y.positional('vm', { type: 'string', describe: 'VM name (served by the host daemon, or by its own daemon at <run dir>/<vm>.ctl)' });

export async function main(argv: string[]): Promise<void> {
  await yargs(argv)
    .scriptName('balloonctl')
    .usage('$0 <command> [VM] [options]\n\nSee and steer vhost-user-balloon. Requests go to the host daemon '
      + `(${hostControlSocket()}), or to a VM's own daemon (${runDir()}/VM.ctl) when no host daemon runs; `
      + '--socket PATH picks another control socket (VUB_RUN_DIR moves the directory).')
    .option('socket', { type: 'string', describe: 'Control socket of the daemon (default: the host daemon\'s, else the VM\'s own)' })
    .option('control-socket', { type: 'string', describe: 'The same, under the name `add` leaves free for the VM\'s socket' })
    .option('json', { type: 'boolean', default: false, describe: 'Machine-readable JSON output' })
    .command('list', 'Every VM on this host at a glance', (y) => y, async (a) => {
      const rows: ListRow[] = [];
      const host = a.socket ?? hostControlSocket();
      if (existsSync(host)) {
        try {
          const r = await withClient(host, (c) => c.request<{ vms: VmSummary[] }>({ op: 'list' }));
          for (const v of r.vms) rows.push({ name: v.vm, summary: v });
        } catch (err) {
          rows.push({ name: `(host daemon ${host})`, error: err instanceof Error ? err.message.split('\n')[0] : String(err) });
        }
      }
      if (!a.socket) {
        let names: string[] = [];
        try {
          names = readdirSync(runDir()).filter((f) => f.endsWith('.ctl')).map((f) => basename(f, '.ctl')).sort();
        } catch {
          // no run dir: no single-VM daemons
        }
        for (const name of names) {
          try {
            rows.push({ name, status: await withClient(controlSocketPath(name), (c) => c.request<DaemonStatus>({ op: 'status' })) });
          } catch (err) {
            rows.push({ name, error: err instanceof Error ? err.message.split('\n')[0] : String(err) });
          }
        }
      }
      print(a, rows, () => (rows.length ? listTable(rows) : `no daemons found in ${runDir()}`));
    })
    .command('status [vm]', 'One VM: target, actual, mode, pressure, guest stats, last decisions; no VM: host totals', (y) => vmArg(y), async (a) => {
      if (!a.vm && !a.socket) {
        const h = await withClient(socketFor(undefined, a), (c) => c.request<HostStatus>({ op: 'host-status' }));
        print(a, h, () => hostStatusText(h));
        return;
      }
      const s = await withClient(socketFor(a.vm, a), (c) => c.request<DaemonStatus>(forVm(a.vm, { op: 'status' as const })));
      print(a, s, () => statusText(s));
    })
    .command('add <vm>', 'Serve a new VM in the host daemon; prints its vhost-user socket (device options as vhost-user-balloon --help lists them)',
      (y) => vmArg(y)
        .option('socket', { type: 'string', describe: 'The VM\'s vhost-user socket (default: <run dir>/<vm>.sock); the control socket is --control-socket here' })
        .option('config', { type: 'string', describe: 'JSON file of the VM\'s options (long option names); flags win' })
        .options(DEVICE_FLAGS),
    async (argv) => {
      const a = argv as unknown as Common & { vm: string; socket?: string; config?: string } & Record<string, unknown>;
      const options: Record<string, unknown> = {};
      for (const name of DEVICE_OPTION_NAMES) if (a[name] !== undefined) options[name] = a[name];
      const abs = (p: string | undefined) => (p && !isAbsolute(p) ? resolve(p) : p);
      const socket = abs(a.socket);
      const config = abs(a.config);
      const control = a['control-socket'] ?? hostControlSocket();
      const r = await withClient(control, (c) => c.request<{ vm: string; socket: string }>({
        op: 'add', vm: a.vm, ...(socket ? { socket } : {}), ...(config ? { config } : {}), ...(Object.keys(options).length ? { options } : {}),
      }));
      print(a, r, () => r.socket);
    })
    .command('remove <vm>', 'Stop serving a VM (refused while QEMU is attached, unless --force)', (y) => vmArg(y)
      .option('force', { type: 'boolean', default: false, describe: 'Remove even with a frontend attached (QEMU runs on without its balloon)' }),
    async (a) => {
      const r = await withClient(socketFor(undefined, a), (c) => c.request({ op: 'remove', vm: a.vm!, ...(a.force ? { force: true } : {}) }));
      print(a, r, () => `removed ${a.vm}`);
    })
    .command('reload', 'Make the host daemon read its config directory again (as SIGHUP does)', (y) => y, async (a) => {
      const r = await withClient(socketFor(undefined, a), (c) => c.request<Record<string, string[]>>({ op: 'reload' }));
      print(a, r, () => Object.entries(r).map(([k, v]) => `${k}: ${v.length ? v.join(', ') : '-'}`).join('\n'));
    })
    .command('set <vm> <size>', 'Set a manual target balloon size; "release" hands control back to automatic mode', (y) => vmArg(y)
      .positional('size', { type: 'string', demandOption: true, describe: 'Balloon size: 512M, 2G, 25% (of guest RAM), or release' })
      .option('owner', { type: 'string', default: process.env.SUDO_USER ?? process.env.USER ?? 'balloonctl', describe: 'Who holds the manual target (shown in status)' }),
    async (a) => {
      if (a.size !== 'release') parseSize(a.size); // fail early, before connecting
      const r = await withClient(socketFor(a.vm, a), (c) => c.request(forVm(a.vm, { op: 'set-target' as const, value: a.size, owner: a.owner })));
      print(a, r, () => (a.size === 'release' ? 'released: automatic mode decides again' : `target set to ${a.size} (manual, held by ${a.owner})`));
    })
    .command('auto <vm> <state>', 'Turn automatic ballooning on or off at run time', (y) => vmArg(y)
      .positional('state', { choices: ['on', 'off'] as const, demandOption: true }),
    async (a) => {
      const r = await withClient(socketFor(a.vm, a), (c) => c.request(forVm(a.vm, { op: 'auto' as const, enabled: a.state === 'on' })));
      print(a, r, () => `automatic ballooning ${a.state}`);
    })
    .command('tune <vm>', 'Change policy settings at run time', (y) => vmArg(y)
      .option('step', { type: 'string', describe: 'Inflate/deflate step, e.g. 32M' })
      .option('hysteresis', { type: 'string', describe: 'Guest-pressure hysteresis, e.g. 60s' })
      .option('floor', { type: 'string', describe: 'Never shrink the guest below this size, e.g. 512M' })
      .option('ceiling', { type: 'string', describe: 'Largest balloon, e.g. 2G' })
      .option('rate-limit', { type: 'string', describe: 'At most one host-driven step per this interval, e.g. 1s' })
      .option('level', { choices: ['low', 'medium', 'critical'] as const, describe: 'vmpressure level to react to' })
      .option('policy', { type: 'string', describe: 'host, seed, mom or proxmox (docs/policy.md); seed without --rate-limit is the source design: no rate limit, no waiting' })
      .option('weight', { type: 'number', describe: 'Host policy: share of the memcg\'s need, relative to its other VMs (0-1000)' })
      .option('reserve', { type: 'string', describe: 'Host policy: memory the guest keeps available, e.g. 512M (0: 10 % of its RAM)' }),
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
      if (a.policy !== undefined) params.policy = policyOption(a.policy);
      // The seed is the source design unless a rate limit is asked for with it, as on the command line.
      if (params.policy === 'seed' && params.rateLimitMs === undefined) Object.assign(params, { rateLimitMs: 0, waitForGuest: false });
      if (a.weight !== undefined) {
        if (!Number.isFinite(a.weight)) throw new BalloonError('EBALLOON_CONFIG', '--weight: not a number', 'give a weight from 0 to 1000, e.g. --weight 2');
        params.weight = a.weight;
      }
      if (a.reserve !== undefined) params.reserveBytes = a.reserve === '0' ? 0 : bytes(a.reserve);
      if (Object.keys(params).length === 0) {
        throw new BalloonError('EBALLOON_CONFIG', 'nothing to tune', 'give at least one of --step --hysteresis --floor --ceiling --rate-limit --level --policy --weight --reserve');
      }
      const r = await withClient(socketFor(a.vm, a), (c) => c.request(forVm(a.vm, { op: 'tune' as const, params })));
      print(a, r, () => `tuned: ${JSON.stringify(r)}`);
    })
    .command('history [vm]', 'Policy decisions with their reasons; without a VM (host daemon): the host-wide decisions, each with the need, every VM\'s spare and its share',
      (y) => vmArg(y).option('limit', { type: 'number', default: 50 }), async (a) => {
        const r = await withClient(socketFor(a.vm, a), (c) => c.request<{ decisions: DecisionRecord[]; host?: HostDecisionRecord[] }>(forVm(a.vm, { op: 'history' as const, limit: a.limit })));
        print(a, r, () => {
          if (a.vm === undefined && r.host && r.decisions.length === 0) return r.host.length ? hostDecisionsText(r.host) : 'no host-wide decisions yet';
          return r.decisions.length ? decisionsTable(r.decisions) : 'no decisions yet';
        });
      })
    .command('watch [vm]', 'Stream events (decisions, pressure, balloon changes) until Ctrl-C', (y) => vmArg(y), async (a) => {
      const c = await ControlClient.connect(socketFor(a.vm, a));
      await c.watch((ev) => process.stdout.write(`${JSON.stringify(ev)}\n`), a.vm);
      await new Promise<void>((resolve) => process.once('SIGINT', () => { c.close(); resolve(); }));
    })
    .command('plot [vm]', 'Write an SVG timeline of target, actual, guest available memory and pressure events', (y) => vmArg(y)
      .option('out', { type: 'string', default: 'balloon-timeline.svg', describe: 'Output file' }),
    async (a) => {
      const r = await withClient(socketFor(a.vm, a), (c) => c.request<{ samples: TimelineSample[]; marks: TimelineMark[]; vm: string }>(forVm(a.vm, { op: 'history' as const, limit: 10_000 })));
      writeFileSync(a.out, timelineSvg(`balloon timeline: ${r.vm}`, r.samples, r.marks));
      print(a, { out: a.out, samples: r.samples.length }, () => `wrote ${a.out} (${r.samples.length} samples)`);
    })
    .completion('completion', 'Print a bash/zsh completion script (source it from your shell rc)')
    .example('$0 list', 'every VM with target, actual, mode and pressure')
    .example('$0 add vm1 --memcg /sys/fs/cgroup/memory/machine.slice --floor 1G', 'serve vm1 in the host daemon (prints its vhost-user socket)')
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
      if (err) throw err;
      // "Unknown argument: stepp" -> did you mean --step?
      const unknown = /^Unknown arguments?: (.+)$/.exec(msg ?? '')?.[1]?.split(', ')[0];
      const near = unknown ? closest(unknown, [...DEVICE_OPTION_NAMES, 'socket', 'config', 'json', 'force', 'owner', 'limit', 'out', 'level', 'ceiling']) : null;
      throw new BalloonError('EBALLOON_CONFIG', msg, near ? `did you mean --${near}?` : undefined);
    })
    .parseAsync();
}

main(hideBin(process.argv)).catch((err: unknown) => {
  const e = err instanceof BalloonError ? err : null;
  process.stderr.write(`balloonctl: ${err instanceof Error ? err.message : String(err)}\n`);
  if (!e || e.code === 'EBALLOON_CONFIG') process.stderr.write('Run balloonctl --help for the commands.\n');
  process.exitCode = e?.code === 'EBALLOON_PERMISSION' ? 77 : e?.code === 'EBALLOON_NOT_CONNECTED' ? 3 : 1;
});
