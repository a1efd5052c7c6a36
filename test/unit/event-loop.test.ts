import { describe, expect, it } from 'vitest';
import { EPOLLIN, EpollLoop } from '../../src/transport/event-loop.js';
import { close, EFD_CLOEXEC, EFD_NONBLOCK, eventfd, eventfdRead, eventfdWrite } from '../../src/transport/libc.js';

describe('EpollLoop (real epoll, real eventfds)', () => {
  it('runs the handler on the main thread when an fd becomes readable', async () => {
    const loop = new EpollLoop();
    const efd = Number(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    const got = new Promise<bigint>((resolve) => loop.watch(efd, EPOLLIN, () => resolve(eventfdRead(efd))));
    setTimeout(() => eventfdWrite(efd, 3n), 20);
    expect(await got).toBe(3n);
    loop.unwatch(efd);
    loop.close();
    close(efd);
  });

  it('stops calling a handler after unwatch and survives closed fds', async () => {
    const loop = new EpollLoop();
    const a = Number(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    const b = Number(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    let aCalls = 0;
    loop.watch(a, EPOLLIN, () => { aCalls++; eventfdRead(a); });
    const bSeen = new Promise<void>((resolve) => loop.watch(b, EPOLLIN, () => { eventfdRead(b); resolve(); }));
    loop.unwatch(a);
    eventfdWrite(a);
    close(a);
    loop.unwatch(a); // unknown now: ignored
    eventfdWrite(b);
    await bSeen;
    expect(aCalls).toBe(0);
    loop.close();
    close(b);
  });

  it('a handler that throws does not stop the loop', async () => {
    const loop = new EpollLoop();
    const errors: unknown[] = [];
    loop.onHandlerError = (e) => errors.push(e);
    const a = Number(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    let n = 0;
    const twice = new Promise<void>((resolve) => loop.watch(a, EPOLLIN, () => {
      eventfdRead(a);
      if (++n === 2) resolve();
      else throw new Error('boom');
    }));
    eventfdWrite(a);
    setTimeout(() => eventfdWrite(a), 30);
    await twice;
    expect(errors).toHaveLength(1);
    loop.close();
    close(a);
  });
});
