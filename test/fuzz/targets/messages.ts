// parseMessages on message-queue buffers: le32 messages, any values, a
// partial message at the end.
import fc from 'fast-check';
import { parseMessages } from '../../../src/device/messages.js';
import { anyU32, leBytes, placed, placement, trailing } from '../arbitraries.js';
import { defineTarget, invariant } from '../harness.js';

const MSG_PRESSURE = 1;

export interface MessagesInput {
  messages: number[];
  tail: number[];
  at: { offset: number; slack: number };
}

export const messagesTarget = defineTarget<MessagesInput>({
  name: 'messages',
  about: 'parseMessages: pressure = le32 1s, unknown = the other whole messages, trailingBytes = the partial one',
  input: fc.record({
    messages: fc.array(fc.oneof(
      { arbitrary: fc.constant(MSG_PRESSURE), weight: 3 },
      // 0x01000000 is MSG_PRESSURE read big-endian.
      { arbitrary: fc.constantFrom(0, 2, 0x0100_0000, 0x0000_0100), weight: 1 },
      { arbitrary: anyU32, weight: 2 },
    ), { maxLength: 64 }),
    tail: trailing(3),
    at: placement,
  }),
  examples: [
    { messages: [], tail: [1], at: { offset: 0, slack: 0 } },
    { messages: [1, 0x0100_0000, 1], tail: [1, 0, 0], at: { offset: 1, slack: 1 } },
  ],
  check({ messages, tail, at }) {
    const bytes: number[] = [];
    for (const m of messages) leBytes(m, 4, bytes);
    bytes.push(...tail);
    const buf = placed(bytes, at);
    const got = parseMessages(buf);
    const pressure = messages.filter((m) => m === MSG_PRESSURE).length;
    invariant(got.pressure === pressure, 'pressure counts the le32 1s', () => ({ got, pressure }));
    invariant(got.unknown === messages.length - pressure, 'unknown counts every other whole message', () => ({ got, messages: messages.length }));
    invariant(got.trailingBytes === tail.length, 'trailingBytes is the partial message', () => ({ got, tail: tail.length }));
  },
});
