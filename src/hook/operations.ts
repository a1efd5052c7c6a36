// What the libvirt hook does for a domain that opts in. The host daemon
// (vhost-user-balloon --host, the systemd unit vhost-user-balloon.service)
// serves every VM; the hook only tells it which VMs libvirt runs. It starts
// no process.
//
//   prepare    ask the daemon for the VM; if it has it on the same socket,
//              that is success (its settings stay); if not, grant its
//              pressure files and add it (socket from the metadata, or
//              /run/vhost-user-balloon/NAME.sock; config file if named).
//              Then give the socket to the user libvirt runs QEMU as.
//              Daemon not running: the domain does not start, and the
//              message says how to start the daemon.
//   release    remove the VM (forced: QEMU is gone). Unknown VM, or no
//              daemon: logged, exit 0.
//   reconnect  libvirtd restarted and found the domain running: make sure
//              the daemon serves it (QEMU's reconnect= gets back in). Never
//              fails: libvirt kills the domain when this hook fails.
//   migrate    on the destination, before the incoming QEMU starts: what
//              prepare does, so the daemon serves the VM's socket when QEMU
//              connects (the device migrates: README, Live migration).
//              Daemon not running: the migration is refused before any QEMU
//              starts there. No output: libvirt keeps the XML as it is.
import { chmodSync, chownSync, existsSync, lstatSync, readFileSync } from 'node:fs';
import { isAbsolute } from 'node:path';
import { BalloonError } from '../errors.js';
import { applyGrants, pressureGrants } from '../host/privileges.js';
import { parseDeviceOptions } from '../options/device.js';
import { readConfigFile } from '../options/values.js';
import { hostControlSocket, vhostSocketPath, validVmName } from '../paths.js';
import { planPressure } from '../pressure/detect.js';
import type { VmSummary } from '../service/vm.js';
import { parseDomain, type DomainInfo } from './domain.js';
import { daemonUser, DaemonNotRunning, HostDaemonClient } from './host-daemon.js';
import { qemuIdentity } from './qemu-user.js';

export interface HookCall {
  /** argv[1] as libvirt passes it: the domain name. */
  domainArg: string;
  op: string;
  subOp: string;
  extra: string;
  /** The domain XML (stdin), read only by the operations that need it. */
  readXml: () => string;
  log: (line: string) => void;
}

type Operation = (call: HookCall) => Promise<number>;

/** libvirt's qemu hook operations this hook acts on; any other exits 0 at once. */
export const OPERATIONS: Readonly<Record<string, Operation>> = {
  prepare: (c) => withDomain(c, prepare),
  release: (c) => withDomain(c, release),
  reconnect: (c) => withDomain(c, reconnect),
  migrate: (c) => withDomain(c, migrate),
};

/** The opted-in domain, or exit 0 for the others. */
async function withDomain(c: HookCall, op: (c: HookCall, d: DomainInfo, vm: Target) => Promise<number>): Promise<number> {
  const dom = parseDomain(c.readXml());
  if (!dom.optIn) return 0;
  if (!validVmName(dom.name)) {
    throw new BalloonError('EBALLOON_CONFIG', `domain name "${dom.name}" cannot name a balloon device (it becomes a file name)`,
      'rename the domain with letters, digits, ".", "_", "+", "-" (virsh domrename), or remove its <vub:balloon> metadata');
  }
  return op(c, dom, target(dom));
}

/** What the daemon is asked to serve for this domain. */
interface Target {
  vm: string;
  socket: string;
  config?: string;
}

function target(dom: DomainInfo): Target {
  const socket = dom.optIn!.socketPath ?? vhostSocketPath(dom.name);
  const config = dom.optIn!.config;
  for (const [attr, path] of [['socket', socket], ['config', config]] as const) {
    if (path !== undefined && !isAbsolute(path)) {
      throw new BalloonError('EBALLOON_CONFIG', `domain ${dom.name}: <vub:balloon ${attr}='${path}'> is not an absolute path`, `give ${attr}= as an absolute path`);
    }
  }
  if (config && !existsSync(config)) {
    throw new BalloonError('EBALLOON_CONFIG', `domain ${dom.name}: the config file ${config} named in <vub:balloon config=...> does not exist`,
      'create it (keys are the long options of vhost-user-balloon --help, see examples/config/vm1.json), or drop config= for the defaults');
  }
  return { vm: dom.name, socket, ...(config ? { config } : {}) };
}

async function connect(): Promise<HostDaemonClient> {
  return HostDaemonClient.connect(hostControlSocket());
}

async function prepare(c: HookCall, dom: DomainInfo, t: Target): Promise<number> {
  if (!dom.device) {
    c.log(`domain ${t.vm} opts in but its <qemu:commandline> has no -device vhost-user-balloon: the daemon serves ${t.socket}, and nothing may connect to it`);
  } else if (dom.device.socketPath && dom.device.socketPath !== t.socket) {
    throw new BalloonError('EBALLOON_CONFIG',
      `domain ${t.vm}: its chardev "${dom.device.chardev}" connects QEMU to ${dom.device.socketPath}, but the balloon socket is ${t.socket}`,
      `make them the same: path= of the -chardev, and socket= of <vub:balloon> (default ${vhostSocketPath(t.vm)})`);
  }
  const daemon = await connect();
  try {
    const served = await ensureServed(c, daemon, t, false);
    const owner = dom.qemuOwner ?? qemuIdentity();
    giveSocketToQemu(t.socket, owner);
    c.log(`${served === 'added' ? 'added' : 'already served:'} ${t.vm} on ${t.socket}${owner ? ` (QEMU's uid ${owner.uid} may connect)` : ''}`);
    return 0;
  } finally {
    daemon.close();
  }
}

async function migrate(c: HookCall, dom: DomainInfo, t: Target): Promise<number> {
  try {
    return await prepare({ ...c, log: (line) => c.log(`incoming migration: ${line}`) }, dom, t);
  } catch (err) {
    if (!(err instanceof BalloonError)) throw err;
    throw new BalloonError(err.code, `incoming migration of ${t.vm} refused on this host: ${err.message.split('\n  hint: ')[0]}`, err.hint);
  }
}

async function release(c: HookCall, _dom: DomainInfo, t: Target): Promise<number> {
  let daemon: HostDaemonClient;
  try {
    daemon = await connect();
  } catch (err) {
    if (!(err instanceof DaemonNotRunning)) throw err;
    // It gets the VM back from its state directory; the next prepare finds it there and goes on.
    c.log(`${t.vm} stopped (${c.extra || c.subOp}); the host daemon is not running, nothing to remove`);
    return 0;
  }
  try {
    const vm = await daemon.find(t.vm);
    if (!vm) {
      c.log(`${t.vm} stopped; the host daemon does not serve it (removed already?): nothing to do`);
      return 0;
    }
    if (vm.origin === 'config-dir') {
      c.log(`${t.vm} stopped; kept in the daemon: it comes from the daemon's config directory (balloonctl remove ${t.vm} to drop it now)`);
      return 0;
    }
    try {
      await daemon.request({ op: 'remove', vm: t.vm, force: true });
    } catch (err) {
      if ((err as BalloonError).code !== 'EBALLOON_UNKNOWN_VM') throw err;
    }
    c.log(`${t.vm} stopped (${c.extra || c.subOp}): removed from the host daemon`);
    return 0;
  } finally {
    daemon.close();
  }
}

async function reconnect(c: HookCall, dom: DomainInfo, t: Target): Promise<number> {
  try {
    const daemon = await connect();
    try {
      if (await ensureServed(c, daemon, t, true) === 'added') {
        giveSocketToQemu(t.socket, dom.qemuOwner ?? qemuIdentity());
        c.log(`${t.vm} runs and the host daemon had lost it: added again on ${t.socket}`);
      }
    } finally {
      daemon.close();
    }
  } catch (err) {
    c.log(`${t.vm}: ${(err as Error).message.split('\n')[0]}; QEMU reconnects once the daemon serves ${t.socket}`);
  }
  return 0;
}

/**
 * Accept what the daemon already has for the VM on the same socket (a VM it
 * restored from its state directory, one of its config directory, or one an
 * operator added ahead with balloonctl add: their settings are kept), or
 * grant its pressure files and add it. Re-adding an existing VM instead
 * (remove + add) would drop those settings and the socket QEMU may be
 * connected to. Two requests: list, then add when needed.
 */
async function ensureServed(c: HookCall, daemon: HostDaemonClient, t: Target, attachedOk: boolean): Promise<'added' | 'kept'> {
  const have: VmSummary | null = await daemon.find(t.vm);
  if (have) {
    if (have.socket !== t.socket) {
      throw new BalloonError('EBALLOON_EXISTS', `the host daemon serves ${t.vm} on ${have.socket ?? 'a passed fd'}, but the domain uses ${t.socket}`,
        have.origin === 'config-dir'
          ? `give the same socket in both: socket-path in the daemon's config directory file ${t.vm}.json, and socket= of <vub:balloon>`
          : `if that entry is stale, drop it with "balloonctl remove ${t.vm}" and start the domain again; or give <vub:balloon socket='${have.socket}'>`);
    }
    if (have.connected && !attachedOk) {
      throw new BalloonError('EBALLOON_BUSY', `${t.socket} already has a frontend attached, but domain ${t.vm} is only starting`,
        `another QEMU uses ${t.vm}'s balloon socket: stop it, or give this domain its own socket (<vub:balloon socket=...>)`);
    }
    return 'kept';
  }
  grantPressureFiles(c, daemon.socket, t);
  try {
    await daemon.request({ op: 'add', vm: t.vm, socket: t.socket, ...(t.config ? { config: t.config } : {}) });
  } catch (err) {
    throw refused(t, err as BalloonError);
  }
  return 'added';
}

function refused(t: Target, e: BalloonError): BalloonError {
  const [message, ...hint] = e.message.split('\n  hint: ');
  return new BalloonError(e.code, `the host daemon cannot serve ${t.vm}: ${message}`, hint.join(' ') || e.hint);
}

/**
 * The daemon runs unprivileged: give its user the cgroup files this VM's
 * pressure source opens (the same rule as vhost-user-balloon --grant), as
 * root, before the add. Best effort: whatever cannot be worked out here, the
 * daemon's answer to the add names.
 */
function grantPressureFiles(c: HookCall, control: string, t: Target): void {
  const user = daemonUser(control);
  if (!user) return;
  let grants;
  try {
    const { 'socket-path': _socket, ...options } = t.config ? readConfigFile(t.config) : {};
    grants = pressureGrants(planPressure(parseDeviceOptions(options, `config file ${t.config ?? '(none)'}`).pressure));
  } catch {
    return;
  }
  for (const r of applyGrants(grants, user)) {
    if (r.action === 'chowned') c.log(`chowned ${r.path} to ${user.name} (${r.access}), for ${t.vm}'s pressure source`);
  }
}

/**
 * QEMU connects to the socket as the user libvirt runs it as: that user
 * becomes the socket's owner. The group stays the daemon's and gets rw, so a
 * restarted daemon can tell the socket is stale (it probes it by
 * connecting) and replace it; QEMU gets into the replacement through that
 * group (install-hook.sh adds QEMU's user to it).
 */
function giveSocketToQemu(socket: string, owner: { uid: number; gid: number } | null): void {
  if (!owner) return;
  const st = lstatSync(socket);
  if (!st.isSocket()) throw new BalloonError('EBALLOON_SOCKET', `${socket} is not a socket`, 'remove it and start the domain again');
  chownSync(socket, owner.uid, st.gid);
  chmodSync(socket, 0o660);
}

/** Reads the domain XML once. */
export function stdinXml(): () => string {
  let xml: string | undefined;
  return () => (xml ??= readFileSync(0, 'utf8'));
}
