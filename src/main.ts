#!/usr/bin/env node
// vhost-user-balloon: the daemon's command line. One process serves any
// number of VMs' balloon devices (--host), or one VM (--vm / --socket-path /
// --fd), through the same code (service/host.ts).
import { chownSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { basename, dirname, join } from 'node:path';
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { BalloonError } from './errors.js';
import { applyGrants, Grant, hasAccess, lookupUser, pressureGrants, selfName } from './host/privileges.js';
import { installSeccomp, seccompProbe } from './host/seccomp.js';
import { createLogger, LOG_LEVELS, Logger, LogLevel } from './log.js';
import { DEVICE_OPTION_NAMES, parseDeviceOptions, settingsFromArgs, withDeviceOptions } from './options/device.js';
import { bytesOption, durationMs, readConfigFile } from './options/values.js';
import { HOST_POLICY_OPTIONS, type HostPolicyArgs, hostPolicyYargs, parseHostPolicy } from './options/host-policy.js';
import { MiB } from './units.js';
import {
  configDir, controlSocketPath, DAEMON_USER, hostControlSocket, runDir, stateDir, vhostSocketPath, validVmName,
} from './paths.js';
import { planPressure, Plan } from './pressure/detect.js';
import { readConfigDir } from './service/config-dir.js';
import { HostDaemon } from './service/host.js';
import { StateStore } from './service/state.js';

const VERSION = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;

const capabilities = {
  type: 'balloon',
  features: ['stats-vq', 'deflate-on-oom', 'page-reporting', 'message-vq'],
};

function parseArgs(argv: string[]) {
  return withDeviceOptions(yargs(argv)
    .scriptName('vhost-user-balloon')
    .parserConfiguration({ 'duplicate-arguments-array': false })
    .usage('$0 --host [options]\n$0 --vm NAME | --socket-path PATH | --fd N [options]\n\n'
      + 'virtio-balloon devices of QEMU VMs as vhost-user backends, with automatic ballooning from host memory pressure\n'
      + 'and guest pressure. --host serves every VM of the host in one process: VMs come from the config directory\n'
      + '(NAME.json each), and from balloonctl add/remove at run time; SIGHUP reloads the directory. --vm / --socket-path\n'
      + 'serve one VM, with the device options below. QEMU connects with:\n'
      + '  -object memory-backend-memfd,id=mem,size=1G,share=on -machine q35,memory-backend=mem\n'
      + '  -chardev socket,id=vb,path=PATH,reconnect=1 -device vhost-user-balloon,chardev=vb')
    .config('config', 'JSON file of options (keys are the long option names); command-line flags win',
      (path: string) => readConfigFile(path))
    .group(['host', 'state-dir', 'config-dir'], 'Host daemon (every VM in one process):')
    .option('host', { type: 'boolean', default: false, describe: 'Serve any number of VMs, added from the config directory and by balloonctl add' })
    .option('state-dir', { type: 'string', describe: 'Where the VM list, manual holds, tuning and auto on/off survive restarts (host default: /var/lib/vhost-user-balloon; single-VM: none)' })
    .option('config-dir', { type: 'string', describe: 'Per-VM config files NAME.json, loaded at start and on SIGHUP (default: /etc/vhost-user-balloon/vms)' })
    .group(HOST_POLICY_OPTIONS.map((o) => o.name), 'Host-wide policy (VMs with --policy host, mom or proxmox; docs/policy.md):')
    .options(hostPolicyYargs())
    .group(['vm', 'socket-path', 'fd', 'control-socket', 'metrics-listen', 'print-capabilities', 'log-level', 'seccomp', 'grant'], 'Daemon:')
    .option('vm', { type: 'string', describe: 'One VM: sockets go to /run/vhost-user-balloon/NAME.sock and NAME.ctl (VUB_RUN_DIR overrides the directory)' })
    .option('socket-path', { type: 'string', describe: 'One VM: listen on this unix socket for QEMU (a stale socket file is replaced)' })
    .option('fd', { type: 'number', describe: 'One VM: serve this already-connected vhost-user socket fd instead (exits when it closes)' })
    .option('control-socket', { type: 'string', describe: 'Control socket for balloonctl (host default: /run/vhost-user-balloon/control.sock; one VM: NAME.ctl beside its socket; "none" disables)' })
    .option('metrics-listen', { type: 'string', describe: 'Serve Prometheus metrics: 127.0.0.1:PORT or unix:/PATH (loopback only); every VM, labelled vm' })
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
        + 'chown the memcg\'s cgroup.event_control (v1) or the cgroup v2 memory.pressure file, and the run directory '
        + '(with --host: for every VM of the config and state directories, and the state directory); '
        + 'the systemd unit runs it as ExecStartPre=+ (the libvirt hook grants the same for each domain it adds)',
    }))
    .conflicts('socket-path', 'fd')
    .check((a) => {
      if (a['print-capabilities']) return true;
      if (a.host) {
        for (const o of ['vm', 'socket-path', 'fd'] as const) if (a[o] !== undefined) throw new Error(`--${o} is for one VM; with --host, VMs come from the config directory or balloonctl add`);
        return true;
      }
      if (a.grant !== undefined) return true;
      if (a['socket-path'] === undefined && a.fd === undefined && a.vm === undefined) throw new Error('give --host, or --vm NAME or --socket-path PATH (or --fd N for a connected socket)');
      if (a.vm !== undefined && !validVmName(a.vm)) throw new Error(`--vm ${a.vm}: use letters, digits, ".", "_", "+", "-" (it becomes a file name)`);
      if (a.fd !== undefined && (!Number.isInteger(a.fd) || a.fd < 0)) throw new Error(`--fd ${a.fd}: expected a non-negative integer`);
      return true;
    })
    .example('$0 --host', 'every VM of this host: config files in /etc/vhost-user-balloon/vms, balloonctl add VM for more')
    .example('$0 --vm vm1', 'one VM at /run/vhost-user-balloon/vm1.sock, control at vm1.ctl')
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

/** Device options typed on a --host command line: they belong in a VM's config. */
function deviceFlagsGiven(argv: string[]): string[] {
  const names = new Set<string>(DEVICE_OPTION_NAMES);
  return argv.filter((x) => x.startsWith('--')).map((x) => x.slice(2).split('=')[0]!.replace(/^no-/, '')).filter((n) => names.has(n));
}

async function main(argv: string[]): Promise<number> {
  const a = parseArgs(argv);
  if (a['print-capabilities']) {
    process.stdout.write(`${JSON.stringify(capabilities, null, 2)}\n`);
    return 0;
  }
  if (a.host) {
    const given = deviceFlagsGiven(argv);
    if (given.length) {
      throw new BalloonError('EBALLOON_CONFIG', `--${given[0]} is a per-VM option, not one of --host`,
        'put it in the VM\'s config file (CONFIG_DIR/NAME.json) or give it to balloonctl add NAME');
    }
    return runHost(a);
  }
  return runSingle(a);
}

type Args = ReturnType<typeof parseArgs>;

function onSignals(daemon: HostDaemon, log: Logger, reload: boolean): void {
  for (const sig of ['SIGTERM', 'SIGINT'] as const) {
    process.on(sig, () => {
      log.info({ signal: sig }, 'shutting down');
      daemon.stop(0);
    });
  }
  if (reload) process.on('SIGHUP', () => {
    log.info({ signal: 'SIGHUP' }, 'reloading the config directory');
    try {
      daemon.reload();
    } catch (err) {
      log.error({ err: (err as Error).message }, 'reload failed');
    }
  });
}

async function runHost(a: Args): Promise<number> {
  const log = createLogger(a['log-level']);
  const controlSocket = a['control-socket'] === 'none' ? null : a['control-socket'] ?? hostControlSocket();
  const state = a['state-dir'] ?? stateDir();
  const configs = a['config-dir'] ?? configDir();
  if (a.grant !== undefined) return grantHost(a.grant, state, configs);
  makeRunDir();
  const policy = parseHostPolicy(a as HostPolicyArgs);
  const daemon = new HostDaemon({ mode: 'host', version: VERSION, controlSocket, metricsListen: a['metrics-listen'] ?? null, stateDir: state, configDir: configs, log, ...policy });
  onSignals(daemon, log, true);
  try {
    await daemon.start();
  } catch (err) {
    daemon.stop(1);
    throw err;
  }
  seccomp(a.seccomp, log);
  log.info({ version: VERSION, control: controlSocket, stateDir: state, configDir: configs, vms: daemon.vmNames }, 'vhost-user-balloon running');
  return daemon.done;
}

async function runSingle(a: Args): Promise<number> {
  const log = createLogger(a['log-level']);
  const socketPath = a['socket-path'] ?? (a.fd === undefined ? vhostSocketPath(a.vm!) : undefined);
  const vm = a.vm ?? (socketPath ? basename(socketPath).replace(/\.sock$/, '') : `fd${a.fd}`);
  const controlSocket = a['control-socket'] === 'none' ? null
    : a['control-socket'] ?? (a.vm ? controlSocketPath(a.vm) : socketPath ? join(dirname(socketPath), `${vm}.ctl`) : null);
  // The run directory is ours to create (it is a tmpfs on most hosts); other
  // directories an operator names must exist.
  const inRunDir = [socketPath, controlSocket].some((p) => p && dirname(p) === runDir());
  const settings = settingsFromArgs(a);
  if (a.grant !== undefined) return grant(a.grant, [planPressure(settings.pressure)], inRunDir, null);
  if (inRunDir) makeRunDir();
  const daemon = new HostDaemon({
    mode: 'single', version: VERSION, controlSocket, metricsListen: a['metrics-listen'] ?? null, stateDir: a['state-dir'] ?? null, configDir: null, log,
    ...parseHostPolicy(a as HostPolicyArgs),
  });
  onSignals(daemon, log, false);
  try {
    await daemon.start();
    const v = daemon.addVm({ vm, ...(socketPath ? { socketPath } : { fd: a.fd! }), settings, options: {}, origin: 'command-line' });
    // With a passed-in socket there is nothing to accept after it closes.
    if (a.fd !== undefined) v.once('frontendGone', () => daemon.stop(0));
  } catch (err) {
    daemon.stop(1);
    throw err;
  }
  seccomp(a.seccomp, log);
  const p = settings.params;
  log.info({ version: VERSION, vm, step: `${p.stepBytes / MiB} MiB`, hysteresisMs: p.hysteresisMs, auto: p.enabled }, 'vhost-user-balloon running');
  return daemon.done;
}

/** --host --grant USER: the run and state directories, and the pressure files of every VM the daemon will load. */
function grantHost(userSpec: string, state: string, configs: string): number {
  const plans: Plan[] = [];
  const notes: string[] = [];
  const add = (vm: string, options: Record<string, unknown>, where: string) => {
    try {
      plans.push(planPressure(parseDeviceOptions(options, where).pressure));
    } catch (err) {
      notes.push(`warning: VM ${vm}: ${(err as Error).message.split('\n')[0]}`);
    }
  };
  for (const e of readConfigDir(configs).entries) add(e.vm, e.options, `config file ${e.file}`);
  for (const p of new StateStore(state).loadAll().vms) if (p.origin === 'control') add(p.vm, p.options, `state of VM ${p.vm}`);
  return grant(userSpec, plans, true, state, notes);
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
function grant(userSpec: string, plans: Plan[], inRunDir: boolean, state: string | null, notes: string[] = []): number {
  if (process.getuid?.() !== 0) throw new BalloonError('EBALLOON_CONFIG', '--grant changes file owners: run it as root');
  const user = lookupUser(userSpec);
  if (!user) {
    throw new BalloonError('EBALLOON_CONFIG', `--grant ${userSpec}: no such user`,
      `create it: useradd --system --no-create-home --shell /usr/sbin/nologin ${userSpec} (examples/install-user.sh)`);
  }
  const seen = new Set<string>();
  const grants: Grant[] = plans.flatMap((p) => pressureGrants(p)).filter((g) => !seen.has(g.path) && seen.add(g.path));
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
  if (state) {
    mkdirSync(state, { recursive: true, mode: 0o700 });
    const st = statSync(state);
    if (st.uid !== user.uid) {
      chownSync(state, user.uid, user.gid);
      lines.push(`chowned ${state} to ${user.name} (the state directory)`);
    } else {
      lines.push(`ok ${state}: ${user.name}'s`);
    }
  }
  for (const r of applyGrants(grants, user)) {
    const g = grants.find((x) => x.path === r.path)!;
    if (r.action === 'chowned') lines.push(`chowned ${r.path} to ${user.name} (${r.access}: ${g.why})`);
    else if (r.action === 'already') lines.push(`ok ${r.path}: ${user.name} has ${r.access} access`);
    else lines.push(`warning: ${r.note}`);
  }
  if (grants.length === 0) lines.push('no host pressure source: no cgroup file needed');
  lines.push(...notes);
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
