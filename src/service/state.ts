// What survives a daemon restart, in the state directory (default
// /var/lib/vhost-user-balloon): one file per VM, vm-NAME.json, holding how
// it was added and what operators changed since (manual hold, auto on/off,
// run-time tuning). Written atomically: a temporary file, fsync, rename,
// fsync of the directory; a crash leaves the old file or the new one. A file
// that cannot be read is renamed NAME.json.corrupt and named in the log, and
// the daemon serves the other VMs (no crash loop under Restart=on-failure).
import { closeSync, fsyncSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import type { RuntimeSettings } from '../control/controller.js';
import { BalloonError } from '../errors.js';
import { validVmName } from '../paths.js';
import type { VmOrigin } from './vm.js';

export const STATE_VERSION = 1;
const PREFIX = 'vm-';
const SUFFIX = '.json';

export interface PersistedVm {
  version: number;
  vm: string;
  socketPath: string;
  origin: Exclude<VmOrigin, 'command-line'>;
  /** The options as given (long option names). */
  options: Record<string, unknown>;
  configFile?: string;
  runtime: RuntimeSettings | null;
}

export interface LoadedState {
  vms: PersistedVm[];
  /** Files that could not be used: already renamed aside. */
  errors: Array<{ file: string; message: string; movedTo: string | null }>;
}

export class StateStore {
  constructor(readonly dir: string) {}

  /** Create the directory (mode 0700: holds and tuning are the operator's). */
  ensure(): void {
    try {
      mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    } catch (err) {
      throw new BalloonError('EBALLOON_STATE', `cannot create the state directory ${this.dir}: ${(err as NodeJS.ErrnoException).code ?? err}`,
        'create it for the daemon\'s user (the systemd unit\'s StateDirectory= does), or pass --state-dir');
    }
  }

  fileOf(vm: string): string {
    return join(this.dir, `${PREFIX}${vm}${SUFFIX}`);
  }

  loadAll(): LoadedState {
    const out: LoadedState = { vms: [], errors: [] };
    let names: string[];
    try {
      names = readdirSync(this.dir).filter((f) => f.startsWith(PREFIX) && f.endsWith(SUFFIX)).sort();
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return out;
      throw new BalloonError('EBALLOON_STATE', `cannot read the state directory ${this.dir}: ${(err as NodeJS.ErrnoException).code ?? err}`);
    }
    for (const name of names) {
      const file = join(this.dir, name);
      try {
        out.vms.push(parsePersisted(readFileSync(file, 'utf8'), name.slice(PREFIX.length, -SUFFIX.length)));
      } catch (err) {
        const movedTo = `${file}.corrupt`;
        let moved: string | null = movedTo;
        try {
          renameSync(file, movedTo);
        } catch {
          moved = null;
        }
        out.errors.push({ file, message: (err as Error).message, movedTo: moved });
      }
    }
    return out;
  }

  save(p: PersistedVm): void {
    this.ensure();
    const file = this.fileOf(p.vm);
    const tmp = `${file}.${process.pid}.tmp`;
    const fd = openSync(tmp, 'w', 0o600);
    try {
      writeSync(fd, `${JSON.stringify(p, null, 2)}\n`);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, file);
    syncDir(this.dir);
  }

  remove(vm: string): void {
    rmSync(this.fileOf(vm), { force: true });
    syncDir(this.dir);
  }
}

function syncDir(dir: string): void {
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** Validate one state file's text; throws with what is wrong. */
export function parsePersisted(text: string, vmFromName: string): PersistedVm {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (err) {
    throw new Error(`not JSON (${(err as Error).message})`);
  }
  const o = v as Record<string, unknown>;
  if (typeof o !== 'object' || o === null || Array.isArray(o)) throw new Error('not a JSON object');
  if (o.version !== STATE_VERSION) throw new Error(`version ${JSON.stringify(o.version)}, this daemon writes ${STATE_VERSION}`);
  if (typeof o.vm !== 'string' || !validVmName(o.vm) || o.vm !== vmFromName) throw new Error(`"vm" must be ${JSON.stringify(vmFromName)}, the file's name`);
  if (typeof o.socketPath !== 'string' || !o.socketPath.startsWith('/')) throw new Error('"socketPath" must be an absolute path');
  if (o.origin !== 'control' && o.origin !== 'config-dir') throw new Error('"origin" must be "control" or "config-dir"');
  if (typeof o.options !== 'object' || o.options === null || Array.isArray(o.options)) throw new Error('"options" must be an object');
  if (o.configFile !== undefined && typeof o.configFile !== 'string') throw new Error('"configFile" must be a string');
  const r = o.runtime as Record<string, unknown> | null | undefined;
  if (r !== null && r !== undefined) {
    if (typeof r !== 'object' || typeof r.autoEnabled !== 'boolean' || typeof r.params !== 'object' || r.params === null) {
      throw new Error('"runtime" must hold "autoEnabled" and "params"');
    }
    const h = r.hold as Record<string, unknown> | null;
    if (h !== null && (typeof h !== 'object' || typeof h.owner !== 'string' || !Number.isSafeInteger(h.targetBytes) || (h.targetBytes as number) < 0)) {
      throw new Error('"runtime.hold" must be null or {"owner", "targetBytes"}');
    }
  }
  return o as unknown as PersistedVm;
}
