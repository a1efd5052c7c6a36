// One QEMU process running the test guest: spawn, serial console, QMP,
// host memory, and a shutdown that always ends the process.
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { closeSync, ftruncateSync, mkdtempSync, openSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { performance } from 'node:perf_hooks';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { type AccelChoice, detectAccel } from './accel.js';
import { buildQemuArgs, type QemuArgsOptions } from './args.js';
import { VmError } from './errors.js';
import { procMemory, type ProcMemory } from './proc.js';
import { QmpClient } from './qmp.js';
import { SerialConsole } from './serial.js';
import { type MemInfo, memInfo, type VubEvent } from './vub-lines.js';

export interface StartVmOptions extends Omit<QemuArgsOptions, 'qmpSocket' | 'accel'> {
  /** qemu-system-x86_64 to run (see qemuBinary()). */
  qemu: string;
  /** Default: detectAccel() on this machine. */
  accel?: AccelChoice;
  /** Default: qmp.sock in a fresh temporary directory, removed when QEMU exits. */
  qmpSocket?: string;
  /** How long QEMU may take to open its QMP socket. */
  startTimeoutMs?: number;
}

export interface VmExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

const STDERR_CAP = 64 * 1024;

export class Vm {
  readonly serial: SerialConsole;
  readonly exited: Promise<VmExit>;
  private exitInfo: VmExit | undefined;
  private stderrText = '';
  qmp!: QmpClient;

  private constructor(
    private readonly child: ChildProcessWithoutNullStreams,
    readonly args: string[],
    readonly accel: AccelChoice,
    readonly qmpSocket: string,
    tmpDir: string | undefined,
  ) {
    const killOnExit = (): void => { child.kill('SIGKILL'); };
    process.once('exit', killOnExit);
    this.serial = new SerialConsole(child.stdout, child.stdin);
    child.stdin.on('error', () => { /* QEMU gone: the serial console reports it */ });
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      this.stderrText = (this.stderrText + d).slice(-STDERR_CAP);
    });
    this.exited = new Promise((resolve) => {
      child.once('close', (code, signal) => {
        this.exitInfo = { code, signal };
        process.off('exit', killOnExit);
        const how = signal ?? `exit ${code}`;
        this.serial.end(`QEMU exited (${how})`);
        this.qmp?.close(`QEMU exited (${how})`);
        if (tmpDir) rmSync(tmpDir, { recursive: true, force: true });
        resolve(this.exitInfo);
      });
    });
  }

  /** Spawns QEMU and connects QMP; rejects with QEMU's stderr if it does not come up. */
  static async start(o: StartVmOptions): Promise<Vm> {
    const accel = o.accel ?? detectAccel();
    const tmpDir = o.qmpSocket ? undefined : mkdtempSync(join(tmpdir(), 'vub-vm-'));
    const qmpSocket = o.qmpSocket ?? join(tmpDir as string, 'qmp.sock');
    const args = buildQemuArgs({ ...o, accel, qmpSocket });
    const child = spawn(o.qemu, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    const vm = new Vm(child, args, accel, qmpSocket, tmpDir);
    await new Promise<void>((resolve, reject) => {
      child.once('spawn', resolve);
      child.once('error', (e) => {
        if (tmpDir) rmSync(tmpDir, { recursive: true, force: true });
        reject(new VmError('EBALLOON_VM_START', `cannot run ${o.qemu}: ${e.message}`));
      });
    });
    try {
      vm.qmp = await QmpClient.connect(qmpSocket, o.startTimeoutMs ?? 15_000, () => vm.running);
    } catch (e) {
      if (vm.running) child.kill('SIGKILL');
      const exit = await vm.exited;
      throw new VmError(
        'EBALLOON_VM_START',
        `QEMU did not start (${exit.signal ?? `exit ${exit.code}`}): ${(e as Error).message}`,
        `qemu ${args.join(' ')}\n${vm.stderr().trim()}`,
      );
    }
    return vm;
  }

  get pid(): number {
    return this.child.pid as number;
  }

  get running(): boolean {
    return this.exitInfo === undefined;
  }

  /** QEMU's stderr so far (last 64 KiB). */
  stderr(): string {
    return this.stderrText;
  }

  /** Waits for `VUB ready` (modules loaded, balloon device looked up). */
  ready(timeoutMs = 120_000): Promise<VubEvent> {
    return this.serial.waitFor((e) => e.type === 'ready', timeoutMs);
  }

  /** Sends a console command to the guest's init and waits for its `VUB ack`. */
  async command(line: string, timeoutMs = 60_000): Promise<VubEvent> {
    const name = line.trim().split(/\s+/)[0] ?? '';
    const since = this.serial.cursor();
    this.serial.send(line);
    const ack = await this.serial.waitFor((e) => e.type === 'ack' && e.args[0] === name, timeoutMs, since);
    if (ack.fields.rc !== '0') throw new VmError('EBALLOON_VM_GUEST', `guest command '${line}' failed: ${ack.raw}`);
    return ack;
  }

  /**
   * Polls query-balloon until QEMU reports `actual` (guest RAM minus balloon,
   * bytes) within toleranceBytes of want; resolves with the last value.
   */
  async waitBalloonActual(wantBytes: number, timeoutMs = 60_000, toleranceBytes = 0): Promise<number> {
    const deadline = performance.now() + timeoutMs;
    let actual = await this.qmp.queryBalloon();
    while (Math.abs(actual - wantBytes) > toleranceBytes) {
      if (performance.now() > deadline) {
        throw new VmError('EBALLOON_VM_TIMEOUT', `balloon actual ${actual} B, want ${wantBytes} B, after ${timeoutMs} ms`);
      }
      await sleep(100);
      actual = await this.qmp.queryBalloon();
    }
    return actual;
  }

  /**
   * The first meminfo the guest read after `e` (an event carrying its guest
   * uptime `up`, such as a command's ack): reports already under way when a
   * command finished are skipped.
   */
  async memInfoAfter(e: VubEvent, timeoutMs = 30_000): Promise<MemInfo> {
    const up = Number(e.fields.up);
    if (!Number.isFinite(up)) throw new RangeError(`event has no guest uptime: ${e.raw}`);
    const m = await this.serial.waitFor((x) => (memInfo(x)?.up ?? -1) > up, timeoutMs, e.seq);
    return memInfo(m) as MemInfo;
  }

  memory(): Promise<ProcMemory> {
    return procMemory(this.pid);
  }

  async rssShmemKiB(): Promise<number> {
    return (await this.memory()).rssShmemKiB;
  }

  /** Signals QEMU directly (fault tests); `exited` tells when it is gone. */
  kill(signal: NodeJS.Signals = 'SIGKILL'): void {
    if (this.running) this.child.kill(signal);
  }

  /** QMP quit; then SIGTERM, then SIGKILL, each after graceMs. Always resolves once QEMU is gone. */
  async shutdown(graceMs = 10_000): Promise<VmExit> {
    if (!this.running) return this.exited;
    if (this.qmp && !this.qmp.isClosed) {
      await Promise.race([this.qmp.quit().catch(() => undefined), sleep(graceMs)]);
    }
    for (const sig of ['SIGTERM', 'SIGKILL'] as const) {
      const done = await Promise.race([this.exited.then(() => true), sleep(graceMs).then(() => false)]);
      if (done) break;
      this.child.kill(sig);
    }
    return this.exited;
  }
}

export const startVm = (o: StartVmOptions): Promise<Vm> => Vm.start(o);

/** A sparse file of `mib` MiB for startVm({ swapDisk }): the guest uses it whole as swap. */
export function createSwapDisk(path: string, mib: number): string {
  const fd = openSync(path, 'w');
  try {
    ftruncateSync(fd, mib * 2 ** 20);
  } finally {
    closeSync(fd);
  }
  return path;
}
