#!/usr/bin/env node
// vhost-user-balloon: the daemon's command line.
import { chownSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { basename, dirname, join } from 'node:path';
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { Daemon } from './daemon.js';
import { parseSize } from './control/units.js';
import { BalloonError } from './errors.js';
import { applyGrants, Grant, hasAccess, lookupUser, pressureGrants, selfDescription, selfName } from './host/privileges.js';
import { installSeccomp, seccompProbe } from './host/seccomp.js';
import { createLogger, LOG_LEVELS, Logger, LogLevel } from './log.js';
import { controlSocketPath, DAEMON_USER, runDir, vhostSocketPath, validVmName } from './paths.js';
import { DEFAULT_PARAMS, mergeParams, PARAM_SPECS } from './policy/params.js';
import { planPressure, Plan } from './pressure/detect.js';
import { parsePsiTrigger, psiTriggerText, DEFAULT_PSI_TRIGGER } from './pressure/psi.js';
import { VMPRESSURE_LEVELS, VMPRESSURE_MODES } from './pressure/types.js';
import { DEFAULT_MESSAGE_VQ_BIT, MESSAGE_VQ_BIT_MAX, MESSAGE_VQ_BIT_MIN } from './virtio/constants.js';
import { validMessageVqBit } from './virtio/features.js';

const VERSION = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
const MiB = 2 ** 20;

const capabilities = {
  type: 'balloon',
  features: ['stats-vq', 'deflate-on-oom', 'page-reporting', 'message-vq'],
};

function bytesOption(name: string, text: string): number {
  let s;
  try {
    s = parseSize(text);
  } catch (err) {
    const e = err as BalloonError;
    throw new BalloonError(e.code, `--${name} ${text}: ${e.message.split('\n')[0]}`, e.hint);
  }
  if (!('bytes' in s)) throw new BalloonError('EBALLOON_CONFIG', `--${name} ${text}: give an absolute size (e.g. 512M)`);
  return s.bytes;
}

function durationMs(name: string, text: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(String(text).trim());
  if (!m) throw new BalloonError('EBALLOON_CONFIG', `--${name} ${text}: not a duration`, 'use 500ms, 60s, 2m or 1h');
  return Math.round(Number(m[1]) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[(m[2] ?? 's') as 'ms']);
}

/** The --config file: a JSON object whose keys are long option names. */
function readConfigFile(path: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EACCES') {
      throw new BalloonError('EBALLOON_CONFIG', `config file ${path}: not readable by ${selfDescription()}`,
        `make it readable by the daemon's user, e.g. chgrp ${selfName()} ${path} && chmod 0640 ${path}`);
    }
    throw new BalloonError('EBALLOON_CONFIG', `config file ${path}: ${(err as Error).message}`,
      'it must be a JSON object whose keys are the long option names, e.g. {"step": "32M", "memcg": "/sys/fs/cgroup/memory/machine.slice"}');
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new BalloonError('EBALLOON_CONFIG', `config file ${path}: not a JSON object`, 'write {"option-name": value, ...}');
  }
  return value as Record<string, unknown>;
}

/** Policy parameter names as operators type them. */
const OPTION_OF_PARAM: Record<string, string> = {
  stepBytes: '--step', hysteresisMs: '--hysteresis', floorBytes: '--floor', maxBalloonBytes: '--max-balloon',
  rateLimitMs: '--rate-limit', enabled: '--auto', waitForGuest: '--wait-for-guest',
  'stats.availablePercent': '--stats-available-percent', 'stats.availableBytes': '--stats-available',
  'stats.swapInBytes': '--stats-swap-in', 'stats.majorFaults': '--stats-major-faults', 'stats.stalls': '--stats-stalls',
  'stats.directReclaimBytes': '--stats-direct-reclaim', 'stats.oomKills': '--stats-oom-kills', 'stats.maxSampleGapMs': '--stats-max-sample-gap',
};

/** A numeric flag that is not a number (yargs gives NaN): name it and the allowed range. */
function countOption(name: string, param: string, value: number): number {
  if (Number.isFinite(value)) return value;
  const spec = PARAM_SPECS[param];
  const range = spec?.kind === 'number' ? `from ${spec.min} to ${spec.max} ${spec.unit}` : 'a number';
  throw new BalloonError('EBALLOON_CONFIG', `--${name}: not a number`, `allowed: ${range}`);
}

/** Validation errors name the command-line option, not the internal parameter. */
function withOptionNames<T>(f: () => T): T {
  try {
    return f();
  } catch (err) {
    if (!(err instanceof BalloonError)) throw err;
    const m = /^([\w.]+) = /.exec(err.message);
    const option = m ? OPTION_OF_PARAM[m[1] ?? ''] : undefined;
    if (!option) throw err;
    const what = (err.message.split('\n')[0] ?? '').slice((m?.[1] ?? '').length + 3);
    throw new BalloonError(err.code, `${option}: ${what}`, err.hint);
  }
}

function parseArgs(argv: string[]) {
  return yargs(argv)
    .scriptName('vhost-user-balloon')
    .parserConfiguration({ 'duplicate-arguments-array': false })
    .usage('$0 --socket-path PATH | --vm NAME [options]\n\n'
      + 'The virtio-balloon device of one QEMU VM, as a vhost-user backend, with automatic ballooning\n'
      + 'from host memory pressure and guest pressure. QEMU connects with:\n'
      + '  -object memory-backend-memfd,id=mem,size=1G,share=on -machine q35,memory-backend=mem\n'
      + '  -chardev socket,id=vb,path=PATH,reconnect=1 -device vhost-user-balloon,chardev=vb')
    .config('config', 'JSON file of options (keys are the long option names); command-line flags win',
      (path: string) => readConfigFile(path))
    .group(['vm', 'socket-path', 'fd', 'control-socket', 'metrics-listen', 'print-capabilities', 'log-level', 'seccomp', 'grant'], 'Daemon:')
    .option('vm', { type: 'string', describe: 'VM name: sockets go to /run/vhost-user-balloon/NAME.sock and NAME.ctl (VUB_RUN_DIR overrides the directory)' })
    .option('socket-path', { type: 'string', describe: 'Listen on this unix socket for QEMU (a stale socket file is replaced)' })
    .option('fd', { type: 'number', describe: 'Serve this already-connected vhost-user socket fd instead (exits when it closes)' })
    .option('control-socket', { type: 'string', describe: 'Control socket for balloonctl (default: NAME.ctl beside the vhost-user socket; "none" disables)' })
    .option('metrics-listen', { type: 'string', describe: 'Serve Prometheus metrics: 127.0.0.1:PORT or unix:/PATH (loopback only)' })
    .option('print-capabilities', { type: 'boolean', describe: 'Print the backend capabilities as JSON and exit' })
    .option('log-level', { choices: LOG_LEVELS, default: 'info' as LogLevel, describe: 'Log verbosity (JSON lines on stderr)' })
    .option('seccomp', {
      type: 'boolean', default: true,
      describe: 'Once started, deny on every thread (seccomp, EPERM) the system calls the daemon never needs: execve, ptrace, '
        + 'process_vm_*, mount, setns/unshare and namespace clones, modules, kexec, bpf, perf, keyrings, userfaultfd, swap, reboot, '
        + 'clock setting, setuid and friends, other ABIs; --no-seccomp leaves it off (docs/privileges.md)',
    })
    .option('grant', {
      type: 'string',
      describe: `As root: give USER (e.g. ${DAEMON_USER}) what the daemon needs with these options, print it and exit: `
        + 'chown the memcg\'s cgroup.event_control (v1) or the cgroup v2 memory.pressure file, and the run directory; '
        + 'the systemd unit runs it as ExecStartPre=+, the libvirt hook before each start',
    })
    .group(['auto', 'step', 'hysteresis', 'floor', 'max-balloon', 'rate-limit', 'wait-for-guest'], 'Policy (docs/policy.md explains each default):')
    .option('auto', { type: 'boolean', default: true, describe: 'Automatic ballooning; --no-auto starts with only manual targets (balloonctl auto VM on turns it on)' })
    .option('step', { type: 'string', default: '32M', describe: 'Balloon change per host-pressure event and per guest-pressure deflate; the source design\'s value, about 85 ms of inflation under TCG' })
    .option('hysteresis', { type: 'string', default: '60s', describe: 'After guest pressure, ignore host pressure this long; the source design\'s value, about 12 stats samples' })
    .option('floor', { type: 'string', default: '0', describe: 'Never balloon the guest below this size (0: no floor, as the daemon cannot know the working set; set one in production)' })
    .option('max-balloon', { type: 'string', default: '0', describe: 'Largest balloon (0: guest RAM minus the floor)' })
    .option('rate-limit', { type: 'string', default: '1s', describe: 'At most one host-driven step per interval, so a storm (~85 vmpressure events/s measured) is one step; 0 steps on every event as the source design did' })
    .option('wait-for-guest', { type: 'boolean', default: true, describe: 'Step again only once the guest is within 256 pages of the last target, so a guest that cannot inflate is not pushed further (--no-wait-for-guest: the source design)' })
    .group(['stats-available-percent', 'stats-available', 'stats-swap-in', 'stats-major-faults', 'stats-stalls', 'stats-direct-reclaim', 'stats-oom-kills', 'stats-max-sample-gap'],
      'Guest pressure from the stats queue (stock guests have no message queue; 0 turns a signal off):')
    .option('stats-available-percent', { type: 'number', default: DEFAULT_PARAMS.stats.availablePercent, describe: 'MemAvailable (tag 6) under this % of MemTotal: the guest is short of memory' })
    .option('stats-available', { type: 'string', default: '0', describe: 'MemAvailable under this size (the larger threshold applies); for large guests, with a lower percentage' })
    .option('stats-swap-in', { type: 'string', default: '4M', describe: 'Swap-in (tag 0) grew this much since the last sample: the guest fetches back pages it needs' })
    .option('stats-major-faults', { type: 'number', default: DEFAULT_PARAMS.stats.majorFaults, describe: 'Major faults (tag 2) grew this much since the last sample; file I/O counts too, so raise it for I/O-heavy guests' })
    .option('stats-stalls', { type: 'number', default: DEFAULT_PARAMS.stats.stalls, describe: 'Allocation stalls (tag 11) grew this much; inflating causes a few, so 1 would cancel most inflations' })
    .option('stats-direct-reclaim', { type: 'string', default: '64M', describe: 'Direct reclaim (tag 15, bytes) grew this much since the last sample' })
    .option('stats-oom-kills', { type: 'number', default: DEFAULT_PARAMS.stats.oomKills, describe: 'The guest OOM killer (tag 10) ran this many times since the last sample' })
    .option('stats-max-sample-gap', { type: 'string', default: '120s', describe: 'Growth is not compared with a sample older than this (a paused guest is no pressure)' })
    .group(['pressure', 'memcg', 'pressure-level', 'pressure-mode', 'psi-trigger'], 'Host pressure:')
    .option('pressure', { choices: ['auto', 'vmpressure', 'psi', 'none'] as const, default: 'auto' as const, describe: 'Source: cgroup v1 vmpressure, cgroup v2 / system PSI, or none (auto: v1 if mounted, else PSI)' })
    .option('memcg', { type: 'string', describe: 'Memory cgroup to watch (default: the root v1 memcg, /sys/fs/cgroup/memory, as in the source design; on cgroup v2-only hosts system-wide PSI; in production the VM\'s own or its parent\'s, e.g. machine.slice)' })
    .option('pressure-level', { choices: VMPRESSURE_LEVELS, default: 'low' as const, describe: 'vmpressure level: low = reclaim started, medium = swapping, critical = about to OOM' })
    .option('pressure-mode', { choices: VMPRESSURE_MODES, describe: 'vmpressure propagation mode (unset: the kernel\'s "default"); on a parent memcg use hierarchy, or listeners below it take the events' })
    .option('psi-trigger', { type: 'string', default: psiTriggerText(DEFAULT_PSI_TRIGGER), describe: 'PSI trigger "<some|full> <stall us> <window us>": 100 ms of memory stall in 2 s; the window must be a multiple of 2 s without CAP_SYS_RESOURCE' })
    .group(['stats-interval', 'message-vq-bit', 'stats-vq', 'deflate-on-oom', 'page-reporting', 'discard'], 'Device:')
    .option('discard', {
      choices: ['deferred', 'immediate'] as const, default: 'deferred' as const,
      describe: 'deferred: acknowledge inflations at once and discard them, merged, on a thread of the daemon (needs MUST_TELL_HOST, which Linux negotiates; deflated pages are never discarded); immediate: discard on the event loop before every acknowledgement',
    })
    .option('stats-interval', { type: 'number', default: 5, describe: 'Seconds between guest memory-statistics requests (0 = never); 5 s gives ~12 samples per hysteresis period for stats-derived guest pressure' })
    .option('message-vq-bit', {
      type: 'string', default: String(DEFAULT_MESSAGE_VQ_BIT),
      describe: `Feature bit of the message virtqueue (${MESSAGE_VQ_BIT_MIN}-${MESSAGE_VQ_BIT_MAX}), or "off"; must match the guest driver (QEMU passes it through)`,
    })
    .option('stats-vq', { type: 'boolean', default: true, describe: 'Offer VIRTIO_BALLOON_F_STATS_VQ' })
    .option('deflate-on-oom', { type: 'boolean', default: true, describe: 'Offer VIRTIO_BALLOON_F_DEFLATE_ON_OOM' })
    .option('page-reporting', { type: 'boolean', default: true, describe: 'Offer VIRTIO_BALLOON_F_PAGE_REPORTING (free page reporting)' })
    .conflicts('socket-path', 'fd')
    .check((a) => {
      if (a['print-capabilities'] || a.grant !== undefined) return true;
      if (a['socket-path'] === undefined && a.fd === undefined && a.vm === undefined) throw new Error('give --vm NAME or --socket-path PATH (or --fd N for a connected socket)');
      if (a.vm !== undefined && !validVmName(a.vm)) throw new Error(`--vm ${a.vm}: use letters, digits, ".", "_", "+", "-" (it becomes a file name)`);
      if (a.fd !== undefined && (!Number.isInteger(a.fd) || a.fd < 0)) throw new Error(`--fd ${a.fd}: expected a non-negative integer`);
      if (!(a['stats-interval'] >= 0)) throw new Error(`--stats-interval ${a['stats-interval']}: expected seconds >= 0`);
      const bit = a['message-vq-bit'];
      if (bit !== 'off' && !validMessageVqBit(Number(bit))) {
        throw new Error(`--message-vq-bit ${bit}: expected ${MESSAGE_VQ_BIT_MIN}-${MESSAGE_VQ_BIT_MAX} or "off" (bits 0-5 belong to upstream features)`);
      }
      return true;
    })
    .example('$0 --vm vm1', 'serve VM vm1 at /run/vhost-user-balloon/vm1.sock, control at vm1.ctl')
    .example('$0 --vm vm1 --memcg /sys/fs/cgroup/memory/machine.slice --step 64M', 'react to the VMs\' parent memcg, 64 MiB steps')
    .example('$0 --socket-path /tmp/vb.sock --no-auto', 'device only; targets from balloonctl or QMP')
    .example('$0 --print-capabilities', 'what QEMU/libvirt probe')
    .strict()
    .showHelpOnFail(false, 'Run vhost-user-balloon --help for the options.')
    .wrap(Math.min(110, process.stdout.columns || 110))
    .help()
    .version(VERSION)
    .parseSync();
}

async function main(argv: string[]): Promise<number> {
  const a = parseArgs(argv);
  if (a['print-capabilities']) {
    process.stdout.write(`${JSON.stringify(capabilities, null, 2)}\n`);
    return 0;
  }
  const log = createLogger(a['log-level']);
  const socketPath = a['socket-path'] ?? (a.fd === undefined ? vhostSocketPath(a.vm!) : undefined);
  const vm = a.vm ?? (socketPath ? basename(socketPath).replace(/\.sock$/, '') : `fd${a.fd}`);
  const controlSocket = a['control-socket'] === 'none' ? null
    : a['control-socket'] ?? (a.vm ? controlSocketPath(a.vm) : socketPath ? join(dirname(socketPath), `${vm}.ctl`) : null);
  // The run directory is ours to create (it is a tmpfs on most hosts); other
  // directories an operator names must exist.
  const inRunDir = [socketPath, controlSocket].some((p) => p && dirname(p) === runDir());
  const params = withOptionNames(() => mergeParams(DEFAULT_PARAMS, {
    stepBytes: bytesOption('step', a.step),
    hysteresisMs: durationMs('hysteresis', a.hysteresis),
    floorBytes: a.floor === '0' ? 0 : bytesOption('floor', a.floor),
    maxBalloonBytes: a['max-balloon'] === '0' ? 0 : bytesOption('max-balloon', a['max-balloon']),
    rateLimitMs: durationMs('rate-limit', a['rate-limit']),
    enabled: a.auto,
    waitForGuest: a['wait-for-guest'],
    stats: {
      availablePercent: countOption('stats-available-percent', 'stats.availablePercent', a['stats-available-percent']),
      availableBytes: a['stats-available'] === '0' ? 0 : bytesOption('stats-available', a['stats-available']),
      swapInBytes: a['stats-swap-in'] === '0' ? 0 : bytesOption('stats-swap-in', a['stats-swap-in']),
      majorFaults: countOption('stats-major-faults', 'stats.majorFaults', a['stats-major-faults']),
      stalls: countOption('stats-stalls', 'stats.stalls', a['stats-stalls']),
      directReclaimBytes: a['stats-direct-reclaim'] === '0' ? 0 : bytesOption('stats-direct-reclaim', a['stats-direct-reclaim']),
      oomKills: countOption('stats-oom-kills', 'stats.oomKills', a['stats-oom-kills']),
      maxSampleGapMs: durationMs('stats-max-sample-gap', a['stats-max-sample-gap']),
    },
  }));
  const pressure = planPressure({
    kind: a.pressure, level: a['pressure-level'], psiTrigger: parsePsiTrigger(a['psi-trigger']),
    ...(a.memcg ? { memcg: a.memcg } : {}), ...(a['pressure-mode'] ? { mode: a['pressure-mode'] } : {}),
  });
  if (a.grant !== undefined) return grant(a.grant, pressure, inRunDir);
  if (inRunDir) makeRunDir();
  const bit = a['message-vq-bit'];
  const daemon = new Daemon({
    vm, version: VERSION, socketPath, fd: a.fd, controlSocket, metricsListen: a['metrics-listen'] ?? null,
    params, autoEnabled: a.auto, pressure, log,
    device: {
      statsIntervalMs: Math.round(a['stats-interval'] * 1000),
      discard: a.discard as 'deferred' | 'immediate',
      features: {
        messageVqBit: bit === 'off' ? null : Number(bit),
        stats: a['stats-vq'], deflateOnOom: a['deflate-on-oom'], pageReporting: a['page-reporting'],
      },
    },
  });
  for (const sig of ['SIGTERM', 'SIGINT'] as const) {
    process.on(sig, () => {
      log.info({ signal: sig }, 'shutting down');
      daemon.stop(0);
    });
  }
  try {
    await daemon.start();
  } catch (err) {
    daemon.stop(1);
    throw err;
  }
  seccomp(a.seccomp, log);
  log.info({ version: VERSION, step: `${params.stepBytes / MiB} MiB`, hysteresisMs: params.hysteresisMs, auto: a.auto }, 'vhost-user-balloon running');
  return daemon.done;
}

/** The run directory, when the sockets go there; a clear error when this user may not create it. */
function makeRunDir(): void {
  try {
    mkdirSync(runDir(), { recursive: true, mode: 0o755 });
  } catch (err) {
    throw new BalloonError('EBALLOON_SOCKET', `cannot create the run directory ${runDir()}: ${(err as NodeJS.ErrnoException).code ?? err}`,
      `create it for the daemon's user, as root: install -d -o ${selfName()} -m 0755 ${runDir()} (the systemd unit's RuntimeDirectory= does); `
      + 'or point VUB_RUN_DIR or --socket-path at a directory this user owns');
  }
}

/** --grant USER: what the daemon needs on this host with these options, given by root. */
function grant(userSpec: string, plan: Plan, inRunDir: boolean): number {
  if (process.getuid?.() !== 0) throw new BalloonError('EBALLOON_CONFIG', '--grant changes file owners: run it as root');
  const user = lookupUser(userSpec);
  if (!user) {
    throw new BalloonError('EBALLOON_CONFIG', `--grant ${userSpec}: no such user`,
      `create it: useradd --system --no-create-home --shell /usr/sbin/nologin ${userSpec} (examples/install-user.sh)`);
  }
  const grants: Grant[] = pressureGrants(plan);
  const lines: string[] = [];
  if (inRunDir) {
    mkdirSync(runDir(), { recursive: true, mode: 0o755 });
    const st = statSync(runDir());
    if (!hasAccess(st, user, 'write')) {
      chownSync(runDir(), user.uid, user.gid);
      lines.push(`chowned ${runDir()} to ${user.name} (its sockets go there)`);
    } else {
      lines.push(`ok ${runDir()}: ${user.name} may create its sockets there`);
    }
  }
  for (const r of applyGrants(grants, user)) {
    const g = grants.find((x) => x.path === r.path)!;
    if (r.action === 'chowned') lines.push(`chowned ${r.path} to ${user.name} (${r.access}: ${g.why})`);
    else if (r.action === 'already') lines.push(`ok ${r.path}: ${user.name} has ${r.access} access`);
    else lines.push(`warning: ${r.note}`);
  }
  if (grants.length === 0) lines.push('no host pressure source: no cgroup file needed');
  process.stdout.write(`${lines.join('\n')}\n`);
  return 0;
}

/** The seccomp denylist, after everything is set up (sockets, pressure source, libraries). */
function seccomp(on: boolean, log: Logger): void {
  if (!on) {
    log.info('seccomp filter off (--no-seccomp)');
  } else {
    const r = installSeccomp();
    if (r.installed) log.info({ deniedSyscalls: r.denied, threads: r.threads, action: 'EPERM' }, 'seccomp filter installed on every thread');
    else log.warn({ err: r.error, threads: r.threads }, 'seccomp filter not installed; running without it');
  }
  // Test aid, never set in production: show what denied calls give from inside the daemon.
  if (process.env.VUB_TEST_SECCOMP_PROBE === '1') {
    let spawnResult: string;
    try {
      const r = spawnSync('/bin/true');
      spawnResult = r.error ? String((r.error as NodeJS.ErrnoException).code) : `exit ${r.status}`;
    } catch (err) {
      spawnResult = String((err as NodeJS.ErrnoException).code ?? err);
    }
    log.warn({ probe: { ...seccompProbe(), spawn: spawnResult } }, 'seccomp probe (VUB_TEST_SECCOMP_PROBE)');
  }
}

main(hideBin(process.argv)).then(
  (code) => { process.exitCode = code; },
  (err: unknown) => {
    process.stderr.write(`vhost-user-balloon: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  },
);
