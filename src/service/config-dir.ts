// The host daemon's directory of per-VM config files (default
// /etc/vhost-user-balloon/vms): NAME.json is VM NAME, a JSON object of the
// device's long option names, plus an optional "socket-path". Loaded at
// start; SIGHUP loads it again (host.ts applies the difference).
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { BalloonError } from '../errors.js';
import { readConfigFile } from '../options/values.js';
import { validVmName } from '../paths.js';

export interface ConfigDirEntry {
  vm: string;
  file: string;
  socketPath?: string;
  /** The device options (socket-path taken out). */
  options: Record<string, unknown>;
}

export interface ConfigDirScan {
  entries: ConfigDirEntry[];
  errors: Array<{ file: string; message: string }>;
}

export function readConfigDir(dir: string): ConfigDirScan {
  const out: ConfigDirScan = { entries: [], errors: [] };
  let names: string[];
  try {
    names = readdirSync(dir).filter((f) => f.endsWith('.json')).sort();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return out;
    throw new BalloonError('EBALLOON_CONFIG', `cannot read the config directory ${dir}: ${(err as NodeJS.ErrnoException).code ?? err}`);
  }
  for (const name of names) {
    const file = join(dir, name);
    const vm = name.slice(0, -'.json'.length);
    if (!validVmName(vm)) {
      out.errors.push({ file, message: `"${vm}" is not a VM name: use letters, digits, ".", "_", "+", "-"` });
      continue;
    }
    try {
      const { 'socket-path': socket, ...options } = readConfigFile(file);
      if (socket !== undefined && (typeof socket !== 'string' || !socket.startsWith('/'))) {
        throw new BalloonError('EBALLOON_CONFIG', `config file ${file}: "socket-path" must be an absolute path`);
      }
      out.entries.push({ vm, file, options, ...(socket ? { socketPath: socket as string } : {}) });
    } catch (err) {
      out.errors.push({ file, message: (err as Error).message.split('\n')[0] ?? String(err) });
    }
  }
  return out;
}

export interface ConfigDirDiff {
  added: ConfigDirEntry[];
  removed: string[];
  changed: ConfigDirEntry[];
}

/** What a reload changes: `current` are the VMs the directory gave before. */
export function diffConfigDir(current: ReadonlyMap<string, { socketPath?: string; options: Record<string, unknown> }>, scan: ConfigDirScan): ConfigDirDiff {
  const seen = new Map(scan.entries.map((e) => [e.vm, e]));
  const broken = new Set(scan.errors.map((e) => e.file));
  const diff: ConfigDirDiff = { added: [], removed: [], changed: [] };
  for (const e of scan.entries) {
    const cur = current.get(e.vm);
    if (!cur) diff.added.push(e);
    else if (!isDeepStrictEqual(cur.options, e.options) || cur.socketPath !== e.socketPath) diff.changed.push(e);
  }
  for (const vm of current.keys()) {
    // A file that exists but does not parse is an error to fix, not a removal.
    if (!seen.has(vm) && ![...broken].some((f) => f.endsWith(`/${vm}.json`))) diff.removed.push(vm);
  }
  return diff;
}
