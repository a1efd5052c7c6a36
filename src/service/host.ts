// The daemon: one process, one event loop, any number of VMs' balloon
// devices (service/vm.ts), each on its own vhost-user socket; one control
// socket, one metrics endpoint, shared host pressure (pressure-hub.ts), and
// in host mode a state directory and a config directory. The single-VM
// command line (--vm, --socket-path, --fd) is this with one VM.
import type { Server } from 'node:http';
import { ControlServer, type ControlHandler } from '../control/server.js';
import { buildRegistry, pressureToConfigChangeSummary, serveMetrics } from '../control/metrics.js';
import type { PeerCred } from '../control/peercred.js';
import type { Request, VmRequest } from '../control/protocol.js';
import type { RuntimeSettings } from '../control/controller.js';
import { BalloonError } from '../errors.js';
import type { Logger } from '../log.js';
import { parseDeviceOptions } from '../options/device.js';
import { readConfigFile } from '../options/values.js';
import { vhostSocketPath } from '../paths.js';
import { EpollLoop } from '../transport/event-loop.js';
import { diffConfigDir, readConfigDir, type ConfigDirEntry } from './config-dir.js';
import { PressureHub } from './pressure-hub.js';
import { DEFAULT_SAMPLE_INTERVAL_MS, PolicyRunner } from './policy-runner.js';
import type { GiveBackParams, HostParams } from '../policy/host.js';
import { StateStore, STATE_VERSION, type PersistedVm } from './state.js';
import { VmService, type VmSpec, type VmSummary } from './vm.js';

export interface HostOptions {
  /** 'host': --host; 'single': the one-VM command line. */
  mode: 'host' | 'single';
  version: string;
  controlSocket: string | null;
  metricsListen: string | null;
  stateDir: string | null;
  configDir: string | null;
  log: Logger;
  /** The host-wide policy: how often each memcg is read (default 1 s), its need and choice constants, and its give-back. */
  sampleIntervalMs?: number;
  hostParams?: HostParams;
  giveBack?: GiveBackParams;
}

export interface HostStatus {
  mode: 'host' | 'single';
  version: string;
  pid: number;
  devices: number;
  connected: number;
  totals: { guestRamBytes: number; targetBytes: number; actualBytes: number; balloonBytes: number };
  pressure: ReturnType<PressureHub['sources']['slice']>;
  /** The host-wide policy's groups: the memcg each reads, its VMs, the last reading and decision. */
  policy: ReturnType<PolicyRunner['status']>;
  vms: VmSummary[];
}

export class HostDaemon implements ControlHandler {
  readonly loop = new EpollLoop();
  readonly hub: PressureHub;
  readonly runner: PolicyRunner;
  private readonly vms = new Map<string, VmService>();
  /** VMs the config directory gave, as it gave them (for reloads). */
  private readonly fromConfigDir = new Map<string, ConfigDirEntry>();
  private readonly state: StateStore | null;
  private control: ControlServer | null = null;
  private metrics: Server | null = null;
  private readonly latency = pressureToConfigChangeSummary();
  private readonly watchers = new Set<(ev: unknown) => void>();
  /** State files of control-added VMs that failed to come back: kept for the operator. */
  private readonly restoredFromState = new Set<string>();
  private stopped = false;
  private resolveDone!: (code: number) => void;
  /** Resolves with the exit code when the daemon stops. */
  readonly done = new Promise<number>((r) => { this.resolveDone = r; });

  constructor(private readonly opts: HostOptions) {
    this.hub = new PressureHub(this.loop, opts.log);
    this.runner = new PolicyRunner({ intervalMs: opts.sampleIntervalMs ?? DEFAULT_SAMPLE_INTERVAL_MS, log: opts.log, ...(opts.hostParams ? { host: opts.hostParams } : {}), ...(opts.giveBack ? { give: opts.giveBack } : {}) });
    this.state = opts.stateDir ? new StateStore(opts.stateDir) : null;
    this.loop.onHandlerError = (err, fd) => opts.log.error({ err, fd }, 'event handler failed');
  }

  get vmNames(): string[] {
    return [...this.vms.keys()].sort();
  }

  vm(name: string): VmService | undefined {
    return this.vms.get(name);
  }

  /** Control socket, metrics, then the VMs of the state and config directories. */
  async start(): Promise<void> {
    const { log } = this.opts;
    if (this.opts.controlSocket) {
      this.control = await ControlServer.listen(this.opts.controlSocket, this, log);
      log.info({ control: this.opts.controlSocket }, 'control socket ready');
    }
    if (this.opts.metricsListen) {
      this.metrics = await serveMetrics(this.opts.metricsListen,
        buildRegistry(() => [...this.vms.values()].map((v) => ({ vm: v.name, src: v.metrics() })), this.latency,
          () => this.runner.status().map((g) => ({
            group: g.group, usageBytes: g.reading?.usageBytes ?? null, limitBytes: g.reading?.limitBytes ?? null, needBytes: g.lastDecision?.needBytes ?? null,
          }))));
      log.info({ metrics: this.opts.metricsListen }, 'metrics on /metrics');
    }
    const runtime = this.restoreState();
    if (this.opts.configDir) this.loadConfigDir(runtime);
    // Saved settings of config-directory VMs whose file is gone: nothing to restore them to.
    for (const [vm] of runtime) {
      if (!this.vms.has(vm) && this.state && !this.restoredFromState.has(vm)) {
        this.state.remove(vm);
        this.opts.log.info({ vm }, `saved settings of VM ${vm} dropped: its config file is gone`);
      }
    }
  }

  /** The state directory's VMs added by balloonctl come back; returns every VM's saved run-time settings. */
  private restoreState(): Map<string, RuntimeSettings> {
    const runtime = new Map<string, RuntimeSettings>();
    if (!this.state) return runtime;
    const loaded = this.state.loadAll();
    for (const e of loaded.errors) {
      this.opts.log.error({ file: e.file, movedTo: e.movedTo, reason: e.message },
        `state file ${e.file} is unusable (${e.message}); ${e.movedTo ? `moved to ${e.movedTo}` : 'left in place'}, its VM is not restored`);
    }
    for (const p of loaded.vms) {
      if (p.runtime) runtime.set(p.vm, p.runtime);
      if (p.origin !== 'control') continue;
      this.restoredFromState.add(p.vm);
      try {
        this.addVm({ vm: p.vm, socketPath: p.socketPath, options: p.options, origin: 'control', ...(p.configFile ? { configFile: p.configFile } : {}) }, p.runtime);
        this.opts.log.info({ vm: p.vm, file: this.state.fileOf(p.vm) }, 'VM restored from the state directory');
      } catch (err) {
        this.opts.log.error({ vm: p.vm, err: (err as Error).message }, `VM ${p.vm} from the state directory could not be restored`);
      }
    }
    return runtime;
  }

  private loadConfigDir(runtime: ReadonlyMap<string, RuntimeSettings>): void {
    const scan = readConfigDir(this.opts.configDir!);
    for (const e of scan.errors) this.opts.log.error({ file: e.file }, `config file skipped: ${e.message}`);
    for (const e of scan.entries) this.addFromConfigDir(e, runtime.get(e.vm) ?? null);
  }

  private addFromConfigDir(e: ConfigDirEntry, runtime: RuntimeSettings | null): boolean {
    if (this.vms.has(e.vm)) {
      this.opts.log.error({ vm: e.vm, file: e.file }, `config file ${e.file} names VM ${e.vm}, which balloonctl added already; skipped`);
      return false;
    }
    try {
      this.addVm({ vm: e.vm, socketPath: e.socketPath ?? vhostSocketPath(e.vm), options: e.options, origin: 'config-dir', configFile: e.file }, runtime);
      this.fromConfigDir.set(e.vm, e);
      this.opts.log.info({ vm: e.vm, file: e.file }, 'VM added from the config directory');
      return true;
    } catch (err) {
      this.opts.log.error({ vm: e.vm, file: e.file, err: (err as Error).message }, `VM ${e.vm} from ${e.file} not added`);
      return false;
    }
  }

  /**
   * Create and start one VM. Options are checked as the command line checks
   * them; errors say what to fix and leave everything as it was.
   */
  addVm(s: Omit<VmSpec, 'settings'> & { settings?: VmSpec['settings'] }, runtime: RuntimeSettings | null = null): VmService {
    if (this.stopped) throw new BalloonError('EBALLOON_INTERNAL', 'the daemon is stopping');
    const existing = this.vms.get(s.vm);
    if (existing) {
      throw new BalloonError('EBALLOON_EXISTS', `VM ${s.vm} is already served (socket ${existing.spec.socketPath ?? `fd ${existing.spec.fd}`})`,
        `balloonctl remove ${s.vm} first, or pick another name`);
    }
    const clash = s.socketPath ? [...this.vms.values()].find((v) => v.spec.socketPath === s.socketPath) : undefined;
    if (clash) throw new BalloonError('EBALLOON_EXISTS', `socket ${s.socketPath} is VM ${clash.name}'s`, 'give this VM its own --socket');
    const settings = s.settings ?? parseDeviceOptions(s.options, s.configFile ? `config file ${s.configFile}` : `VM ${s.vm}`);
    const vm = new VmService({ ...s, settings }, {
      loop: this.loop, hub: this.hub, version: this.opts.version, log: this.opts.log,
      observeLatency: (name, seconds) => this.latency.observe({ vm: name }, seconds),
      onHostPressure: (v, ev) => this.runner.pressure(v, ev),
    });
    vm.start(); // throws: socket in use, pressure source missing, ...
    this.vms.set(s.vm, vm);
    this.runner.add(vm, vm.scope);
    if (runtime) vm.controller.restoreRuntime(runtime);
    vm.controller.subscribe((ev) => this.publish({ vm: s.vm, ...(ev as Record<string, unknown>) }));
    vm.on('runtimeChanged', () => this.persist(vm));
    this.persist(vm);
    this.publish({ type: 'vm-added', vm: s.vm, socket: s.socketPath ?? null });
    return vm;
  }

  /** Stop serving a VM; refused while its frontend is attached unless forced. */
  removeVm(name: string, force: boolean, why = 'removed'): void {
    const vm = this.vms.get(name);
    if (!vm) throw this.unknownVm(name);
    if (vm.attached && !force) {
      throw new BalloonError('EBALLOON_BUSY', `VM ${name} has a frontend (QEMU) attached`,
        `stop the VM first, or balloonctl remove ${name} --force (QEMU then runs on without its balloon, or reconnects if it comes back)`);
    }
    vm.stop(why);
    this.runner.remove(vm);
    this.latency.remove({ vm: name });
    this.vms.delete(name);
    this.fromConfigDir.delete(name);
    this.state?.remove(name);
    this.opts.log.info({ vm: name, why, force }, 'VM removed');
    this.publish({ type: 'vm-removed', vm: name, why });
  }

  /** SIGHUP (or balloonctl reload): apply the config directory as it is now. */
  reload(): { added: string[]; removed: string[]; changed: string[]; kept: string[]; errors: string[] } {
    const out = { added: [] as string[], removed: [] as string[], changed: [] as string[], kept: [] as string[], errors: [] as string[] };
    if (!this.opts.configDir) {
      this.opts.log.info('reload: no config directory to read');
      return out;
    }
    const scan = readConfigDir(this.opts.configDir);
    for (const e of scan.errors) {
      out.errors.push(`${e.file}: ${e.message}`);
      this.opts.log.error({ file: e.file }, `reload: config file skipped: ${e.message}`);
    }
    const diff = diffConfigDir(this.fromConfigDir, scan);
    for (const e of diff.added) if (this.addFromConfigDir(e, null)) out.added.push(e.vm);
    for (const vm of diff.removed) {
      try {
        this.removeVm(vm, false, `its config file is gone from ${this.opts.configDir}`);
        out.removed.push(vm);
      } catch (err) {
        out.kept.push(vm);
        this.opts.log.warn({ vm, reason: (err as Error).message.split('\n')[0] }, `reload: VM ${vm} kept although its config file is gone: a frontend is attached (balloonctl remove ${vm} --force)`);
      }
    }
    for (const e of diff.changed) this.applyChanged(e, out);
    this.opts.log.info(out, 'config directory reloaded');
    return out;
  }

  /** A changed config file: policy settings apply at once; device settings need the VM re-created. */
  private applyChanged(e: ConfigDirEntry, out: { changed: string[]; kept: string[]; errors: string[] }): void {
    const vm = this.vms.get(e.vm)!;
    let settings;
    try {
      settings = parseDeviceOptions(e.options, `config file ${e.file}`);
    } catch (err) {
      out.errors.push((err as Error).message.split('\n')[0]!);
      this.opts.log.error({ vm: e.vm, file: e.file, err: (err as Error).message }, `reload: ${e.file} not applied`);
      return;
    }
    const sameDevice = JSON.stringify([settings.device, settings.pressure]) === JSON.stringify([vm.spec.settings.device, vm.spec.settings.pressure])
      && (e.socketPath ?? vhostSocketPath(e.vm)) === vm.spec.socketPath;
    if (sameDevice) {
      vm.controller.handle({ op: 'tune', params: { ...settings.params } }, { pid: process.pid, uid: process.getuid?.() ?? 0, gid: 0 });
      vm.spec.options = e.options;
      vm.spec.settings = settings;
      this.fromConfigDir.set(e.vm, e);
      out.changed.push(e.vm);
      this.opts.log.info({ vm: e.vm, file: e.file }, 'reload: policy settings applied');
      return;
    }
    if (vm.attached) {
      out.kept.push(e.vm);
      this.opts.log.warn({ vm: e.vm, file: e.file }, `reload: ${e.file} changes device or pressure settings; they apply when VM ${e.vm} has no frontend (stop the VM, then reload)`);
      return;
    }
    const runtime = vm.controller.runtime();
    this.removeVm(e.vm, false, 'its config file changed');
    if (this.addFromConfigDir(e, runtime)) out.changed.push(e.vm);
  }

  private persist(vm: VmService): void {
    if (!this.state || vm.spec.origin === 'command-line' || !vm.spec.socketPath) return;
    const p: PersistedVm = {
      version: STATE_VERSION, vm: vm.name, socketPath: vm.spec.socketPath, origin: vm.spec.origin, options: vm.spec.options,
      ...(vm.spec.configFile ? { configFile: vm.spec.configFile } : {}), runtime: vm.controller.runtime(),
    };
    try {
      this.state.save(p);
    } catch (err) {
      this.opts.log.error({ vm: vm.name, err: (err as Error).message }, `could not save ${this.state.fileOf(vm.name)}: the VM's settings will not survive a restart`);
    }
  }

  private unknownVm(name: string | undefined): BalloonError {
    const known = this.vmNames;
    return new BalloonError('EBALLOON_UNKNOWN_VM', name ? `no VM ${name} in this daemon` : 'which VM?',
      known.length ? `VMs here: ${known.join(', ')}` : 'this daemon serves no VM yet: balloonctl add VM');
  }

  /** The VM a per-VM request is for: named, or the only one of a single-VM daemon. */
  private target(name: string | undefined): VmService {
    if (name !== undefined) {
      const vm = this.vms.get(name);
      if (!vm) throw this.unknownVm(name);
      return vm;
    }
    if (this.opts.mode === 'single' && this.vms.size === 1) return [...this.vms.values()][0]!;
    throw this.unknownVm(undefined);
  }

  handle(req: Exclude<Request, { op: 'watch' }>, peer: PeerCred): unknown {
    switch (req.op) {
      case 'add': {
        const fromFile = req.config ? readConfigFile(req.config) : {};
        const { 'socket-path': fileSocket, ...fileOptions } = fromFile;
        const socketPath = req.socket ?? (typeof fileSocket === 'string' ? fileSocket : vhostSocketPath(req.vm));
        const options = { ...fileOptions, ...(req.options ?? {}) };
        this.addVm({ vm: req.vm, socketPath, options, origin: 'control', ...(req.config ? { configFile: req.config } : {}) });
        this.opts.log.info({ vm: req.vm, socket: socketPath, by: peer.uid }, 'VM added');
        return { vm: req.vm, socket: socketPath };
      }
      case 'remove':
        this.removeVm(req.vm, req.force ?? false);
        return { removed: req.vm };
      case 'list':
        return { mode: this.opts.mode, vms: this.vmNames.map((n) => this.vms.get(n)!.summary()) };
      case 'host-status':
        return this.status();
      case 'reload':
        return this.reload();
      case 'history':
        // No VM on the host daemon: the host-wide decisions (need, spares, shares).
        if (req.vm === undefined && !(this.opts.mode === 'single' && this.vms.size === 1)) {
          return { decisions: [], host: this.runner.decisions.last(req.limit ?? 1000) };
        }
        // One VM: its own decisions carry their host share; a single-VM daemon adds the host-wide ones.
        if (this.opts.mode === 'host') return this.target(req.vm).controller.handle(req, peer);
        return { ...(this.target(req.vm).controller.handle(req, peer) as object), host: this.runner.decisions.last(req.limit ?? 1000) };
      case 'hello':
        if (req.vm === undefined && !(this.opts.mode === 'single' && this.vms.size === 1)) {
          return { protocol: 1, version: this.opts.version, mode: this.opts.mode, vms: this.vmNames };
        }
        return { ...(this.target(req.vm).controller.handle(req, peer) as object), mode: this.opts.mode };
      default: {
        const r = req as VmRequest & { vm?: string };
        return this.target(r.vm).controller.handle(r, peer);
      }
    }
  }

  subscribe(req: Extract<Request, { op: 'watch' }>, listener: (event: unknown) => void): () => void {
    if (req.vm !== undefined || this.opts.mode === 'single') {
      const vm = this.target(req.vm);
      return vm.controller.subscribe((ev) => listener({ vm: vm.name, ...(ev as Record<string, unknown>) }));
    }
    this.watchers.add(listener);
    return () => this.watchers.delete(listener);
  }

  private publish(ev: Record<string, unknown>): void {
    if (this.watchers.size === 0) return;
    const e = { time: new Date().toISOString(), ...ev };
    for (const w of this.watchers) w(e);
  }

  status(): HostStatus {
    const vms = this.vmNames.map((n) => this.vms.get(n)!.summary());
    const sum = (k: 'guestRamBytes' | 'targetBytes' | 'actualBytes' | 'balloonBytes') => vms.reduce((n, v) => n + v[k], 0);
    return {
      mode: this.opts.mode, version: this.opts.version, pid: process.pid, devices: vms.length, connected: vms.filter((v) => v.connected).length,
      totals: { guestRamBytes: sum('guestRamBytes'), targetBytes: sum('targetBytes'), actualBytes: sum('actualBytes'), balloonBytes: sum('balloonBytes') },
      pressure: this.hub.sources, policy: this.runner.status(), vms,
    };
  }

  stop(code = 0): void {
    if (this.stopped) return;
    this.stopped = true;
    this.runner.stop();
    for (const vm of this.vms.values()) vm.stop('daemon stopping');
    this.vms.clear();
    this.hub.stop();
    this.metrics?.close();
    const control = this.control;
    this.loop.close();
    this.opts.log.info('stopped');
    void (control ? control.close() : Promise.resolve()).finally(() => this.resolveDone(code));
  }
}
