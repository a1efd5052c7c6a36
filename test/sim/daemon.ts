// Run the real daemon (dist/src/main.js) for a test: a unique socket, its
// JSON log lines collected, a clean stop that reports the exit code.
//
// VUB_SANITIZE_DIR=<dir of `bash native/build.sh --sanitize`> runs the daemon
// (only the daemon: the test process keeps the normal shim) on the ASan+UBSan
// libraries with their runtime preloaded; stop() then fails on any report the
// daemon printed.
import { ChildProcess, spawn } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { ControlClient } from '../../src/control/client.js';
import type { DaemonStatus } from '../../src/control/status.js';

// test/sim in the tree, or dist/test/sim when compiled for the benchmarks.
const up = resolve(import.meta.dirname, '..', '..');
const ROOT = existsSync(join(up, 'package.json')) ? up : resolve(up, '..');
export const DAEMON_JS = join(ROOT, 'dist', 'src', 'main.js');

/** How a sanitizer report starts (ASan, LSan, UBSan). */
const SANITIZER_REPORT = /^==\d+==ERROR: \w+Sanitizer|: runtime error: |^SUMMARY: \w+Sanitizer/;

/** Environment for a daemon on the sanitized libraries, or {} without VUB_SANITIZE_DIR. */
export function sanitizerEnv(): Record<string, string> {
  const dir = process.env.VUB_SANITIZE_DIR;
  if (!dir) return {};
  // build.sh --sanitize records the runtime the libraries need preloaded.
  const preload = readFileSync(join(dir, 'preload'), 'utf8').trim();
  return {
    VUB_NATIVE_DIR: dir,
    LD_PRELOAD: preload,
    ASAN_OPTIONS: 'detect_leaks=0:abort_on_error=1',
    UBSAN_OPTIONS: 'halt_on_error=1:print_stacktrace=1',
  };
}

export interface LogLine {
  level: number;
  msg: string;
  [k: string]: unknown;
}

export class DaemonProcess {
  readonly logs: LogLine[] = [];
  /** stderr lines of sanitizer reports (with VUB_SANITIZE_DIR). */
  readonly sanitizerReport: string[] = [];
  exitCode: number | null = null;
  private exited: Promise<number | null>;

  private constructor(readonly child: ChildProcess, readonly socketPath: string, readonly dir: string, readonly controlPath = join(dir, 'vhost.ctl')) {
    let buf = '';
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (chunk: string) => {
      buf += chunk;
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        try {
          this.logs.push(JSON.parse(line) as LogLine);
        } catch {
          this.logs.push({ level: 50, msg: line });
          if (this.sanitizerReport.length > 0 || SANITIZER_REPORT.test(line)) this.sanitizerReport.push(line);
        }
      }
    });
    this.exited = new Promise((res) => child.once('exit', (code) => { this.exitCode = code; res(code); }));
  }

  /**
   * `dir` reuses a directory (and so the socket path), e.g. to restart a daemon for a running QEMU.
   * `as` runs the daemon as that uid:gid (no supplementary groups); the directory is given to it.
   */
  static async start(args: string[] = [], env: Record<string, string> = {}, dir = mkdtempSync(join(tmpdir(), 'vub-')),
    as?: { uid: number; gid: number }): Promise<DaemonProcess> {
    if (!existsSync(DAEMON_JS)) throw new Error(`${DAEMON_JS} missing: run npm run build (or npm test, which builds)`);
    const socketPath = join(dir, 'vhost.sock');
    // Tests drive pressure themselves unless they ask for a source.
    const pressure = args.includes('--pressure') ? [] : ['--pressure', 'none'];
    // VUB_DAEMON_NODE_ARGS: node flags for the daemon, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof".
    const nodeArgs = (process.env.VUB_DAEMON_NODE_ARGS ?? '').split(' ').filter(Boolean);
    if (as) chownSync(dir, as.uid, as.gid);
    const child = spawn(process.execPath, [...nodeArgs, DAEMON_JS, '--socket-path', socketPath, '--log-level', 'debug', ...pressure, ...args], {
      stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...sanitizerEnv(), ...env }, ...(as ? { uid: as.uid, gid: as.gid } : {}),
    });
    const d = new DaemonProcess(child, socketPath, dir);
    const deadline = Date.now() + 10_000;
    // Up means set up: listening, and done with what follows (seccomp reads
    // /proc/self/task, so an fd count taken earlier would see a passing fd).
    const upSignal = () => existsSync(socketPath) && d.logs.some((l) => l.msg === 'vhost-user-balloon running');
    while (!upSignal()) {
      if (d.exitCode !== null || Date.now() > deadline) {
        throw new Error(`daemon did not come up (exit ${d.exitCode}): ${d.logs.map((l) => l.msg).join(' | ')}`);
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    const sanitized = sanitizerEnv().VUB_NATIVE_DIR;
    if (sanitized && !readFileSync(`/proc/${child.pid}/maps`, 'utf8').includes(`${sanitized}/libvub-shim.so`)) {
      await d.stop();
      throw new Error(`VUB_SANITIZE_DIR is set but the daemon did not load ${sanitized}/libvub-shim.so`);
    }
    return d;
  }

  /**
   * A host daemon (--host) in `dir`: control socket dir/run/control.sock, state
   * in dir/state, config files in dir/conf (write them before starting), VM
   * sockets in dir/run (VUB_RUN_DIR). `socketPath` is unused; addVm() gives
   * each VM's. `env.VUB_RUN_DIR` moves the run directory (and the control
   * socket with it). `as` runs the daemon as that uid:gid (no supplementary
   * groups; `dir` is given to it), `umask` with that umask (the unit's UMask=).
   */
  static async startHost(args: string[] = [], env: Record<string, string> = {}, dir = mkdtempSync(join(tmpdir(), 'vub-host-')),
    o: { as?: { uid: number; gid: number }; umask?: number } = {}): Promise<DaemonProcess> {
    if (!existsSync(DAEMON_JS)) throw new Error(`${DAEMON_JS} missing: run npm run build (or npm test, which builds)`);
    // The control socket is the default one in VUB_RUN_DIR, where balloonctl looks.
    const run = env.VUB_RUN_DIR ?? join(dir, 'run');
    const control = join(run, 'control.sock');
    const nodeArgs = (process.env.VUB_DAEMON_NODE_ARGS ?? '').split(' ').filter(Boolean);
    if (o.as) chownSync(dir, o.as.uid, o.as.gid);
    const oldMask = o.umask === undefined ? undefined : process.umask(o.umask); // the child inherits it
    let child: ChildProcess;
    try {
      child = spawn(process.execPath, [...nodeArgs, DAEMON_JS, '--host', '--state-dir', join(dir, 'state'),
        '--config-dir', join(dir, 'conf'), '--log-level', 'debug', ...args], {
        stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...sanitizerEnv(), VUB_RUN_DIR: run, ...env },
        ...(o.as ? { uid: o.as.uid, gid: o.as.gid } : {}),
      });
    } finally {
      if (oldMask !== undefined) process.umask(oldMask);
    }
    const d = new DaemonProcess(child, '', dir, control);
    const deadline = Date.now() + 10_000;
    while (!(existsSync(control) && d.logs.some((l) => l.msg === 'vhost-user-balloon running'))) {
      if (d.exitCode !== null || Date.now() > deadline) {
        throw new Error(`host daemon did not come up (exit ${d.exitCode}): ${d.logs.map((l) => l.msg).join(' | ')}`);
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    return d;
  }

  /** A control request (host daemons: per-VM requests name their VM). */
  async request<T = unknown>(req: Record<string, unknown>): Promise<T> {
    const c = await ControlClient.connect(this.controlPath);
    try {
      return await c.request<T>(req as never);
    } finally {
      c.close();
    }
  }

  /** A VM's status (single-VM daemons: `vm` may be left out). */
  status(vm?: string): Promise<DaemonStatus> {
    return this.request<DaemonStatus>(vm ? { op: 'status', vm } : { op: 'status' });
  }

  /** Host daemons: add a VM (tests drive pressure themselves unless given); returns its vhost-user socket. */
  async addVm(vm: string, options: Record<string, unknown> = {}): Promise<string> {
    const r = await this.request<{ socket: string }>({ op: 'add', vm, options: { pressure: 'none', ...options } });
    return r.socket;
  }

  /** Log lines whose msg or kind matches. */
  find(pred: (l: LogLine) => boolean): LogLine[] {
    return this.logs.filter(pred);
  }

  async waitForLog(pred: (l: LogLine) => boolean, timeoutMs = 5000): Promise<LogLine> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const hit = this.logs.find(pred);
      if (hit) return hit;
      if (Date.now() > deadline) throw new Error(`no matching daemon log within ${timeoutMs} ms; last: ${this.logs.slice(-5).map((l) => l.msg).join(' | ')}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /** Open fds of the daemon (for leak checks). */
  fds(): string[] {
    const dir = `/proc/${this.child.pid}/fd`;
    return readdirSync(dir).map((f) => {
      try {
        return readlinkSync(join(dir, f));
      } catch {
        return '?';
      }
    });
  }

  /** memfd mappings of the daemon (guest RAM it still maps). */
  guestMappings(): number {
    const maps = readFileSync(`/proc/${this.child.pid}/maps`, 'utf8');
    return maps.split('\n').filter((l) => l.includes('memfd:vub-sim-guest-ram')).length;
  }

  /** Stops the daemon; its directory is removed unless keepDir (a successor will use it). */
  async stop(signal: NodeJS.Signals = 'SIGTERM', keepDir = false): Promise<number | null> {
    if (this.exitCode === null) this.child.kill(signal);
    const code = await Promise.race([this.exited, new Promise<null>((r) => setTimeout(() => r(null), 5000))]);
    if (this.exitCode === null) this.child.kill('SIGKILL');
    if (!keepDir) rmSync(this.dir, { recursive: true, force: true });
    if (this.sanitizerReport.length > 0) {
      throw new Error(`the daemon printed a sanitizer report:\n${this.sanitizerReport.slice(0, 60).join('\n')}`);
    }
    return code;
  }
}
