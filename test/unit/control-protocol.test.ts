import { describe, expect, it } from 'vitest';
import { BalloonError } from '../../src/errors.js';
import { errorLine, okLine, parseRequest } from '../../src/control/protocol.js';

describe('parseRequest', () => {
  it.each([
    ['{"v":1,"id":1,"op":"status"}', { v: 1, id: 1, req: { op: 'status' } }],
    ['{"v":1,"op":"hello"}', { v: 1, id: null, req: { op: 'hello' } }],
    ['{"v":1,"id":"a","op":"set-target","value":"512M"}', { v: 1, id: 'a', req: { op: 'set-target', value: '512M' } }],
    ['{"v":1,"id":2,"op":"set-target","value":"release","owner":"ops"}', { v: 1, id: 2, req: { op: 'set-target', value: 'release', owner: 'ops' } }],
    ['{"v":1,"id":3,"op":"auto","enabled":false}', { v: 1, id: 3, req: { op: 'auto', enabled: false } }],
    ['{"v":1,"id":4,"op":"tune","params":{"stepBytes":1}}', { v: 1, id: 4, req: { op: 'tune', params: { stepBytes: 1 } } }],
    ['{"v":1,"id":5,"op":"history","limit":10}', { v: 1, id: 5, req: { op: 'history', limit: 10 } }],
    ['{"v":1,"id":6,"op":"watch"}', { v: 1, id: 6, req: { op: 'watch' } }],
  ])('accepts %s', (line, env) => {
    expect(parseRequest(line)).toEqual(env);
  });

  it.each([
    ['not json', /not JSON/],
    ['[1]', /JSON object/],
    ['{"op":"status"}', /protocol version undefined/],
    ['{"v":2,"op":"status"}', /version 2/],
    ['{"v":1,"op":"reboot"}', /unknown op "reboot"/],
    ['{"v":1,"op":"set-target"}', /needs "value"/],
    ['{"v":1,"op":"set-target","value":5}', /needs "value"/],
    ['{"v":1,"op":"auto","enabled":"yes"}', /true or false/],
    ['{"v":1,"op":"tune","params":[1]}', /needs "params"/],
    ['{"v":1,"op":"history","limit":0}', /limit/],
    ['{"v":1,"id":{},"op":"status"}', /id must be/],
  ])('rejects %s', (line, msg) => {
    expect(() => parseRequest(line)).toThrow(BalloonError);
    expect(() => parseRequest(line)).toThrow(msg);
  });
});

describe('response lines', () => {
  it('ok and error lines carry the id and a stable code', () => {
    expect(JSON.parse(okLine(3, { a: 1 }))).toEqual({ v: 1, id: 3, ok: true, result: { a: 1 } });
    const e = JSON.parse(errorLine(4, new BalloonError('EBALLOON_RANGE', 'too big', 'smaller')));
    expect(e).toEqual({ v: 1, id: 4, ok: false, error: { code: 'EBALLOON_RANGE', message: 'too big', hint: 'smaller' } });
    expect(JSON.parse(errorLine(5, new Error('x'))).error.code).toBe('EBALLOON_INTERNAL');
  });
});
