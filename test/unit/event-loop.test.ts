import { describe, expect, it } from 'vitest';
import { EPOLLIN, EpollLoop } from '../../src/transport/event-loop.js';
import { close, EFD_CLOEXEC, EFD_NONBLOCK, eventfd, eventfdRead, eventfdWrite, libc } from '../../src/transport/libc.js';

const dup = libc().func('int dup(int fd)');

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

  it('stops calling a handler after unwatch', async () => {
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

  it('an fd closed before unwatch, whose file lives on elsewhere (a kick eventfd QEMU holds), is reported, not ignored', async () => {
    const loop = new EpollLoop();
    const errors: string[] = [];
    loop.onHandlerError = (e) => errors.push((e as Error).message);
    const kick = Number(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    const peer = Number(dup(kick)); // the frontend's copy of the same open file
    const b = Number(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)); // before the close: no fd number reuse
    loop.watch(kick, EPOLLIN, () => eventfdRead(kick));
    close(kick); // closed first, as libvhost-user did before the deferred remove
    loop.unwatch(kick);
    expect(errors).toEqual([`fd ${kick} was closed before it was unwatched: its epoll registration may outlive it`]);
    // The registration outlives the fd: a kick on the peer's copy still
    // wakes the loop, which says so once instead of spinning silently.
    const bSeen = new Promise<void>((resolve) => loop.watch(b, EPOLLIN, () => { eventfdRead(b); resolve(); }));
    eventfdWrite(peer);
    eventfdWrite(b);
    await bSeen;
    await new Promise((r) => setTimeout(r, 20));
    expect(errors.filter((m) => m.includes('nobody watches'))).toHaveLength(1);
    loop.close();
    close(peer);
    close(b);
  });

  it('forget drops a handler whose registration someone else removed', async () => {
    const loop = new EpollLoop();
    const a = Number(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    let calls = 0;
    loop.watch(a, EPOLLIN, () => { calls++; eventfdRead(a); });
    loop.forget(a);
    expect(loop.watchedCount).toBe(0);
    loop.close();
    close(a);
    expect(calls).toBe(0);
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
