// The control socket protocol, version 1: newline-delimited JSON over a unix
// stream socket. One request per line; one response line per request with
// the same id; `watch` then streams event lines until the client hangs up.
// Per-VM requests name their VM in "vm"; a single-VM daemon (--vm, --socket-path)
// also takes them without. The host daemon adds add/remove/list/host-status/reload.
//
//   -> {"v":1,"id":7,"op":"set-target","value":"512M"}
//   <- {"v":1,"id":7,"ok":true,"result":{...}}
//   <- {"v":1,"id":8,"ok":false,"error":{"code":"EBALLOON_RANGE","message":"...","hint":"..."}}
//   <- {"v":1,"event":{...}}                      (after "watch")
import { BalloonError } from '../errors.js';
import { validVmName } from '../paths.js';

export const PROTOCOL_VERSION = 1;
/** Longest request line accepted; longer ones get an error and the connection closes. */
export const MAX_REQUEST_BYTES = 64 * 1024;

/** What one VM's controller answers. */
export type VmRequest =
  | { op: 'hello' }
  | { op: 'status' }
  | { op: 'history'; limit?: number }
  | { op: 'set-target'; value: string; owner?: string }
  | { op: 'auto'; enabled: boolean }
  | { op: 'tune'; params: Record<string, unknown> };

/** What the daemon answers itself. */
export type HostRequest =
  | { op: 'add'; vm: string; socket?: string; config?: string; options?: Record<string, unknown> }
  | { op: 'remove'; vm: string; force?: boolean }
  | { op: 'list' }
  | { op: 'host-status' }
  | { op: 'reload' };

export type Request = (VmRequest & { vm?: string }) | HostRequest | { op: 'watch'; vm?: string };

export type Op = Request['op'];
export const OPS: readonly Op[] = ['hello', 'status', 'history', 'set-target', 'auto', 'tune', 'watch', 'add', 'remove', 'list', 'host-status', 'reload'];
export const HOST_OPS: readonly Op[] = ['add', 'remove', 'list', 'host-status', 'reload'];

export interface Envelope {
  v: number;
  id: string | number | null;
  req: Request;
}

function fail(message: string, hint?: string): never {
  throw new BalloonError('EBALLOON_CONFIG', message, hint);
}

/** Parse and validate one request line. Throws BalloonError with what to fix. */
export function parseRequest(line: string): Envelope {
  let raw: unknown;
  try {
    raw = JSON.parse(line);
  } catch {
    fail('request is not JSON', 'send one JSON object per line, e.g. {"v":1,"id":1,"op":"status"}');
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) fail('request must be a JSON object');
  const r = raw as Record<string, unknown>;
  if (r.v !== PROTOCOL_VERSION) fail(`unsupported protocol version ${JSON.stringify(r.v)}`, `this daemon speaks v${PROTOCOL_VERSION}; upgrade balloonctl or the daemon`);
  const id = r.id;
  if (id !== undefined && id !== null && typeof id !== 'string' && typeof id !== 'number') fail('id must be a string or a number');
  const op = r.op;
  if (typeof op !== 'string' || !(OPS as readonly string[]).includes(op)) fail(`unknown op ${JSON.stringify(op)}`, `ops: ${OPS.join(', ')}`);
  const req = validate(op as Op, r);
  if (!(HOST_OPS as readonly string[]).includes(op) && r.vm !== undefined) {
    if (typeof r.vm !== 'string' || !validVmName(r.vm)) fail(`"vm" must be a VM name, got ${JSON.stringify(r.vm)}`);
    (req as { vm?: string }).vm = r.vm;
  }
  return { v: PROTOCOL_VERSION, id: (id as string | number | undefined) ?? null, req };
}

function vmName(r: Record<string, unknown>, op: string): string {
  if (typeof r.vm !== 'string' || !validVmName(r.vm)) {
    fail(`${op} needs "vm": a VM name (letters, digits, ".", "_", "+", "-"), got ${JSON.stringify(r.vm)}`);
  }
  return r.vm;
}

function validate(op: Op, r: Record<string, unknown>): Request {
  switch (op) {
    case 'add': {
      const vm = vmName(r, op);
      for (const k of ['socket', 'config'] as const) {
        if (r[k] !== undefined && (typeof r[k] !== 'string' || !(r[k] as string).startsWith('/'))) fail(`add: "${k}" must be an absolute path`);
      }
      if (r.options !== undefined && (typeof r.options !== 'object' || r.options === null || Array.isArray(r.options))) fail('add: "options" must be an object of long option names');
      return {
        op, vm, ...(r.socket ? { socket: r.socket as string } : {}), ...(r.config ? { config: r.config as string } : {}),
        ...(r.options ? { options: r.options as Record<string, unknown> } : {}),
      };
    }
    case 'remove':
      if (r.force !== undefined && typeof r.force !== 'boolean') fail('remove: "force" must be true or false');
      return { op, vm: vmName(r, op), ...(r.force ? { force: true } : {}) };
    case 'set-target': {
      if (typeof r.value !== 'string' || r.value.length === 0 || r.value.length > 32) fail('set-target needs "value": a size such as "512M", "2G", "25%", or "release"');
      if (r.owner !== undefined && (typeof r.owner !== 'string' || r.owner.length > 64)) fail('"owner" must be a string of at most 64 characters');
      return { op, value: r.value, ...(r.owner !== undefined ? { owner: r.owner as string } : {}) };
    }
    case 'auto':
      if (typeof r.enabled !== 'boolean') fail('auto needs "enabled": true or false');
      return { op, enabled: r.enabled };
    case 'tune':
      if (typeof r.params !== 'object' || r.params === null || Array.isArray(r.params)) fail('tune needs "params": an object of policy settings');
      return { op, params: r.params as Record<string, unknown> };
    case 'history': {
      const limit = r.limit;
      if (limit !== undefined && (!Number.isInteger(limit) || (limit as number) < 1 || (limit as number) > 10_000)) fail('"limit" must be an integer from 1 to 10000');
      return limit === undefined ? { op } : { op, limit: limit as number };
    }
    default:
      return { op } as Request;
  }
}

export function okLine(id: Envelope['id'], result: unknown): string {
  return `${JSON.stringify({ v: PROTOCOL_VERSION, id, ok: true, result })}\n`;
}

export function errorLine(id: Envelope['id'], err: unknown): string {
  const e = err instanceof BalloonError
    ? { code: err.code, message: err.message.split('\n')[0], ...(err.hint ? { hint: err.hint } : {}) }
    : { code: 'EBALLOON_INTERNAL', message: err instanceof Error ? err.message : String(err) };
  return `${JSON.stringify({ v: PROTOCOL_VERSION, id, ok: false, error: e })}\n`;
}

export function eventLine(event: unknown): string {
  return `${JSON.stringify({ v: PROTOCOL_VERSION, event })}\n`;
}
