// Start and stop one VM's daemon for the libvirt hook: detached, as the
// daemon's own unprivileged user, with a pidfile and a log file in root's
// hook state directory (the run directory with the sockets belongs to the
// daemon's user, who must not be able to rewrite what root later signals).
//
// The pidfile holds "PID STARTTIME": the start time is field 22 of
// /proc/PID/stat (clock ticks after boot), which a reused pid does not share.
// The hook signals only a process whose start time matches, through a pidfd
// opened before the check, so the pid cannot be reused in between either.
import { spawn, spawnSync } from 'node:child_process';
import { chownSync, closeSync, existsSync, lstatSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { UserIdentity } from '../host/privileges.js';
import { hookStateDir } from '../paths.js';
import { close, libc } from '../transport/libc.js';

export interface StartRequest {
  vm: string;
  socketPath: string;
  config?: string;
  /** chown the vhost-user socket so QEMU (run by libvirt as this user) may connect. */
  owner: { uid: number; gid: number } | null;
  daemonJs: string;
  /** Run the daemon as this user (no supplementary groups), after granting it what it needs; null: as the hook's own user. */
  user: UserIdentity | null;
}

export const pidFile = (vm: string): string => join(hookStateDir(), `${vm}.pid`);
export const logFile = (vm: string): string => join(hookStateDir(), `${vm}.log`);

/** Field 22 of /proc/PID/stat (start time in clock ticks after boot), or null when there is no such process. */
export function processStartTime(pid: number): string | null {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  // Field 2 (comm) is in parentheses and may hold spaces and ')': fields 3.. follow the last ')'.
  const rest = text.slice(text.lastIndexOf(')') + 2).split(' ');
  return rest[22 - 3] ?? null;
}

interface PidRecord {
  pid: number;
  /** null in a pidfile written before start times were recorded. */
  startTime: string | null;
}

export function pidFileText(pid: number, startTime: string): string {
  return `${pid} ${startTime}\n`;
}

function readPidFile(vm: string): PidRecord | null {
  const path = pidFile(vm);
  try {
    const st = lstatSync(path);
    // Only a regular file of the hook's own user is believed.
    if (!st.isFile() || st.uid !== (process.getuid?.() ?? 0)) return null;
    const [p, t] = readFileSync(path, 'utf8').trim().split(/\s+/);
    const pid = Number(p);
    if (!Number.isInteger(pid) || pid <= 0) return null;
    return { pid, startTime: t && /^\d+$/.test(t) ? t : null };
  } catch {
    return null;
  }
}

/** Is `rec` still the daemon the hook started for `vm`? The reason when not. */
function identify(vm: string, rec: PidRecord): { ok: true } | { ok: false; reason: string } {
  const now = processStartTime(rec.pid);
  if (now === null) return { ok: false, reason: `pid ${rec.pid} is not running` };
  if (rec.startTime !== null) {
    return now === rec.startTime ? { ok: true }
      : { ok: false, reason: `pid ${rec.pid} is another process now (started at tick ${now}, the daemon at tick ${rec.startTime}): the pid was reused` };
  }
  // A pidfile of an older hook: believe it only for a daemon serving this VM.
  let argv: string[] = [];
  try {
    argv = readFileSync(`/proc/${rec.pid}/cmdline`, 'utf8').split('\0');
  } catch {
    // gone
  }
  const i = argv.indexOf('--vm');
  return i >= 0 && argv[i + 1] === vm && argv.some((a) => a.endsWith('main.js')) ? { ok: true }
    : { ok: false, reason: `pid ${rec.pid} is not a vhost-user-balloon daemon for ${vm} (no start time in the pidfile, and its command line differs)` };
}

/** The running daemon of `vm`, or null (with why, when a pidfile named something else). */
function liveDaemon(vm: string): { pid: number; startTime: string | null } | { pid: null; reason: string | null } {
  const rec = readPidFile(vm);
  if (!rec) return { pid: null, reason: null };
  const id = identify(vm, rec);
  return id.ok ? rec : { pid: null, reason: id.reason };
}

/** Starts the daemon unless one runs for this VM; resolves once it listens. */
export async function startDaemon(r: StartRequest, timeoutMs = 10_000): Promise<number> {
  mkdirSync(hookStateDir(), { recursive: true, mode: 0o755 });
  const existing = liveDaemon(r.vm);
  if (existing.pid !== null) return existing.pid;
  const options = ['--vm', r.vm, '--socket-path', r.socketPath, ...(r.config ? ['--config', r.config] : [])];
  if (r.user) {
    // The daemon's own options decide which cgroup files it needs (and the run directory): give them to its user.
    const g = spawnSync(process.execPath, [r.daemonJs, '--grant', r.user.name, ...options], { encoding: 'utf8', timeout: 30_000 });
    if (g.status !== 0) throw new Error(`granting ${r.user.name} what the daemon for ${r.vm} needs failed: ${(g.stderr || g.error?.message || '').trim()}`);
  }
  rmSync(r.socketPath, { force: true });
  const log = openSync(logFile(r.vm), 'a');
  const args = [r.daemonJs, ...options];
  // With uid/gid, libuv also drops every supplementary group (setgroups(0)): the daemon needs none.
  const child = spawn(process.execPath, args, {
    detached: true, stdio: ['ignore', log, log], ...(r.user ? { uid: r.user.uid, gid: r.user.gid } : {}),
  });
  closeSync(log);
  const pid = child.pid;
  if (pid === undefined) throw new Error(`cannot start ${process.execPath} ${args.join(' ')}`);
  let exitCode: number | null = null;
  child.once('exit', (code) => { exitCode = code ?? 1; });
  child.unref();
  const startTime = processStartTime(pid);
  const deadline = Date.now() + timeoutMs;
  while (!existsSync(r.socketPath)) {
    if (exitCode !== null) throw new Error(`the daemon for ${r.vm} exited with status ${exitCode}; see ${logFile(r.vm)}`);
    if (Date.now() > deadline) throw new Error(`the daemon for ${r.vm} did not listen on ${r.socketPath} within ${timeoutMs} ms; see ${logFile(r.vm)}`);
    await sleep(25);
  }
  if (r.owner) chownSync(r.socketPath, r.owner.uid, r.owner.gid);
  writeFileSync(pidFile(r.vm), pidFileText(pid, startTime ?? '0'), { mode: 0o644 });
  return pid;
}

type Signaller = { send(sig: NodeJS.Signals): void; close(): void };

let pidfdApi: { open: (pid: number, flags: number) => number; send: (fd: number, sig: number, info: null, flags: number) => number } | null | undefined;

/**
 * A handle that signals exactly the process `rec` names: a pidfd (glibc 2.36,
 * Linux 5.3) opened first, then the start time checked, so the pid cannot be
 * reused between the check and the signal. Without pidfds: kill() right
 * after the check. Null when the process is not the daemon (any more).
 */
function signaller(vm: string, rec: PidRecord): Signaller | { reason: string } {
  if (pidfdApi === undefined) {
    try {
      const lib = libc();
      pidfdApi = {
        open: lib.func('int pidfd_open(int pid, unsigned int flags)') as (pid: number, flags: number) => number,
        send: lib.func('int pidfd_send_signal(int pidfd, int sig, void *info, unsigned int flags)') as (fd: number, sig: number, info: null, flags: number) => number,
      };
    } catch {
      pidfdApi = null;
    }
  }
  const fd = pidfdApi ? Number(pidfdApi.open(rec.pid, 0)) : -1;
  const id = identify(vm, rec);
  if (!id.ok) {
    if (fd >= 0) close(fd);
    return { reason: id.reason };
  }
  const signo = (sig: NodeJS.Signals) => ({ SIGTERM: 15, SIGKILL: 9 } as Record<string, number>)[sig] ?? 15;
  return {
    send: (sig) => {
      if (fd >= 0 && pidfdApi) pidfdApi.send(fd, signo(sig), null, 0);
      else process.kill(rec.pid, sig);
    },
    close: () => { if (fd >= 0) close(fd); },
  };
}

export interface StopResult {
  /** A daemon was running and was told to stop. */
  stopped: boolean;
  /** What the hook found, when there was something to say (e.g. a reused pid left alone). */
  message: string | null;
}

/** Stops the VM's daemon (SIGTERM, then SIGKILL); signals nothing but the process the pidfile recorded. */
export async function stopDaemon(vm: string, timeoutMs = 5_000): Promise<StopResult> {
  const rec = readPidFile(vm);
  rmSync(pidFile(vm), { force: true });
  if (!rec) return { stopped: false, message: null };
  const s = signaller(vm, rec);
  if ('reason' in s) return { stopped: false, message: `not signalling: ${s.reason}` };
  try {
    s.send('SIGTERM');
    const deadline = Date.now() + timeoutMs;
    const alive = () => processStartTime(rec.pid) !== null && identify(vm, rec).ok;
    while (alive() && Date.now() < deadline) await sleep(25);
    if (alive()) s.send('SIGKILL');
  } finally {
    s.close();
  }
  return { stopped: true, message: null };
}
