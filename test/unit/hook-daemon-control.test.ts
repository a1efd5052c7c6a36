// The libvirt hook's pidfiles: a pid is signalled only while it is still the
// process the hook started (same start time, /proc/PID/stat field 22), so a
// reused pid, an old-format pidfile naming another program, or a pidfile the
// hook did not write never gets an unrelated process killed.
import { ChildProcess, spawn } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { SKIP, skipUnless } from '../skip.js';
import { pidFile, pidFileText, processStartTime, stopDaemon } from '../../src/hook/daemon-control.js';

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

describe('hook pidfiles and pid reuse', () => {
  let dir: string;
  const children: ChildProcess[] = [];
  const sleeper = (cmd = ['sleep', '60']): ChildProcess => {
    const c = spawn(cmd[0]!, cmd.slice(1), { stdio: 'ignore' });
    children.push(c);
    return c;
  };
  const exited = (c: ChildProcess) => new Promise<NodeJS.Signals | null>((r) => {
    if (c.exitCode !== null || c.signalCode !== null) r(c.signalCode);
    else c.once('exit', (_code, sig) => r(sig));
  });

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'vub-hook-state-'));
    process.env.VUB_HOOK_STATE_DIR = dir;
  });
  afterEach(() => {
    for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  });
  afterAll(() => {
    delete process.env.VUB_HOOK_STATE_DIR;
    rmSync(dir, { recursive: true, force: true });
  });

  it('processStartTime reads field 22 even when the command name holds spaces and ")"', async () => {
    const c = sleeper(['sh', '-c', 'printf "x) y (z" > /proc/$$/comm; sleep 60; true']);
    await new Promise((r) => setTimeout(r, 200));
    const t = processStartTime(c.pid!);
    expect(t).toMatch(/^\d+$/);
    expect(Number(t)).toBeGreaterThanOrEqual(Number(processStartTime(process.pid)));
    expect(processStartTime(2 ** 22 + 1)).toBeNull(); // above pid_max: no such process
  });

  it('a pidfile naming a live unrelated process with a wrong start time: not signalled, and the hook says so', async () => {
    const c = sleeper();
    const real = processStartTime(c.pid!)!;
    writeFileSync(pidFile('vm-reused'), pidFileText(c.pid!, String(Number(real) - 1)));
    const r = await stopDaemon('vm-reused', 1000);
    expect(r.stopped).toBe(false);
    expect(r.message).toBe(`not signalling: pid ${c.pid} is another process now (started at tick ${real}, the daemon at tick ${Number(real) - 1}): the pid was reused`);
    await new Promise((res) => setTimeout(res, 200));
    expect(alive(c.pid!)).toBe(true);
    expect(c.signalCode).toBeNull();
    expect(existsSync(pidFile('vm-reused'))).toBe(false);
  });

  it('the same pidfile with the right start time: the process is stopped (SIGTERM)', async () => {
    const c = sleeper();
    writeFileSync(pidFile('vm-ours'), pidFileText(c.pid!, processStartTime(c.pid!)!));
    const r = await stopDaemon('vm-ours', 2000);
    expect(r).toEqual({ stopped: true, message: null });
    expect(await exited(c)).toBe('SIGTERM');
  });

  it('an old pidfile (pid only) naming a process that is not our daemon for the VM: not signalled', async () => {
    const c = sleeper();
    writeFileSync(pidFile('vm-legacy'), `${c.pid}\n`);
    const r = await stopDaemon('vm-legacy', 1000);
    expect(r.stopped).toBe(false);
    expect(r.message).toMatch(/not a vhost-user-balloon daemon for vm-legacy/);
    expect(alive(c.pid!)).toBe(true);
  });

  skipUnless(process.getuid?.() === 0, SKIP.notRoot).it('a pidfile the hook did not write (another owner): ignored', async () => {
    const c = sleeper();
    writeFileSync(pidFile('vm-foreign'), pidFileText(c.pid!, processStartTime(c.pid!)!));
    chownSync(pidFile('vm-foreign'), 65534, 65534);
    const r = await stopDaemon('vm-foreign', 1000);
    expect(r).toEqual({ stopped: false, message: null });
    expect(alive(c.pid!)).toBe(true);
  });

  it('no pidfile, or one naming a process that is gone: nothing to stop', async () => {
    expect(await stopDaemon('vm-none')).toEqual({ stopped: false, message: null });
    const c = sleeper(['true']);
    await exited(c);
    writeFileSync(pidFile('vm-gone'), pidFileText(c.pid!, '12345'));
    const r = await stopDaemon('vm-gone');
    expect(r.stopped).toBe(false);
    expect(r.message).toBe(`not signalling: pid ${c.pid} is not running`);
  });
});
