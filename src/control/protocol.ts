// The control socket protocol, version 1: newline-delimited JSON over a unix
// stream socket. One request per line; one response line per request with
// the same id; `watch` then streams event lines until the client hangs up.
//
//   -> {"v":1,"id":7,"op":"set-target","value":"512M"}
//   <- {"v":1,"id":7,"ok":true,"result":{...}}
//   <- {"v":1,"id":8,"ok":false,"error":{"code":"EBALLOON_RANGE","message":"...","hint":"..."}}
//   <- {"v":1,"event":{...}}                      (after "watch")
import { BalloonError } from '../errors.js';

export const PROTOCOL_VERSION = 1;
/** Longest request line accepted; longer ones get an error and the connection closes. */
export const MAX_REQUEST_BYTES = 64 * 1024;

export type Request =
  | { op: 'hello' }
  | { op: 'status' }
  | { op: 'history'; limit?: number }
  | { op: 'set-target'; value: string; owner?: string }
  | { op: 'auto'; enabled: boolean }
  | { op: 'tune'; params: Record<string, unknown> }
  | { op: 'watch' };

export type Op = Request['op'];
export const OPS: readonly Op[] = ['hello', 'status', 'history', 'set-target', 'auto', 'tune', 'watch'];

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
  return { v: PROTOCOL_VERSION, id: (id as string | number | undefined) ?? null, req: validate(op as Op, r) };
}

function validate(op: Op, r: Record<string, unknown>): Request {
  switch (op) {
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
