// Start and stop one VM's daemon for the libvirt hook: detached, with a
// pidfile and a log file under the run directory.
import { spawn } from 'node:child_process';
import { chownSync, closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { runDir } from '../paths.js';

export interface StartRequest {
  vm: string;
  socketPath: string;
  config?: string;
  /** chown the vhost-user socket so QEMU (run by libvirt as this user) may connect. */
  owner: { uid: number; gid: number } | null;
  daemonJs: string;
}

export const pidFile = (vm: string): string => join(runDir(), `${vm}.pid`);
export const logFile = (vm: string): string => join(runDir(), `${vm}.log`);

function running(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function readPid(vm: string): number | null {
  try {
    const pid = Number(readFileSync(pidFile(vm), 'utf8').trim());
    return Number.isInteger(pid) && pid > 0 && running(pid) ? pid : null;
  } catch {
    return null;
  }
}

/** Starts the daemon unless one runs for this VM; resolves once it listens. */
export async function startDaemon(r: StartRequest, timeoutMs = 10_000): Promise<number> {
  mkdirSync(runDir(), { recursive: true, mode: 0o755 });
  const existing = readPid(r.vm);
  if (existing) return existing;
  rmSync(r.socketPath, { force: true });
  const log = openSync(logFile(r.vm), 'a');
  const args = [r.daemonJs, '--vm', r.vm, '--socket-path', r.socketPath, ...(r.config ? ['--config', r.config] : [])];
  const child = spawn(process.execPath, args, { detached: true, stdio: ['ignore', log, log] });
  closeSync(log);
  const pid = child.pid;
  if (pid === undefined) throw new Error(`cannot start ${process.execPath} ${args.join(' ')}`);
  let exitCode: number | null = null;
  child.once('exit', (code) => { exitCode = code ?? 1; });
  child.unref();
  const deadline = Date.now() + timeoutMs;
  while (!existsSync(r.socketPath)) {
    if (exitCode !== null) throw new Error(`the daemon for ${r.vm} exited with status ${exitCode}; see ${logFile(r.vm)}`);
    if (Date.now() > deadline) throw new Error(`the daemon for ${r.vm} did not listen on ${r.socketPath} within ${timeoutMs} ms; see ${logFile(r.vm)}`);
    await sleep(25);
  }
  if (r.owner) chownSync(r.socketPath, r.owner.uid, r.owner.gid);
  writeFileSync(pidFile(r.vm), `${pid}\n`);
  return pid;
}

/** Stops the VM's daemon (SIGTERM, then SIGKILL); true if one was running. */
export async function stopDaemon(vm: string, timeoutMs = 5_000): Promise<boolean> {
  const pid = readPid(vm);
  rmSync(pidFile(vm), { force: true });
  if (!pid) return false;
  process.kill(pid, 'SIGTERM');
  const deadline = Date.now() + timeoutMs;
  while (running(pid) && Date.now() < deadline) await sleep(25);
  if (running(pid)) process.kill(pid, 'SIGKILL');
  return true;
}
