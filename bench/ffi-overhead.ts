// Why koffi, and which wait: the cost of one FFI call and of waking the
// event loop in both modes, measured here. (ffi-napi 4.0.3, the library it replaces, does not build on Node 20:
// its native addon fails to compile against Node 20's N-API headers.)
import { performance } from 'node:perf_hooks';
import { EPOLLIN, EpollLoop } from '../src/transport/event-loop.js';
import { EFD_CLOEXEC, EFD_NONBLOCK, eventfd, eventfdRead, eventfdWrite, getpid, close } from '../src/transport/libc.js';

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]!;
}

async function main(): Promise<void> {
  const calls = 1_000_000;
  for (let i = 0; i < 10_000; i++) getpid();
  const t0 = performance.now();
  for (let i = 0; i < calls; i++) getpid();
  const perCallUs = ((performance.now() - t0) * 1000) / calls;
  console.log(`koffi sync call (getpid): ${perCallUs.toFixed(3)} us/call over ${calls} calls`);

  for (const mode of ['uv', 'threadpool'] as const) await wakeLatency(mode);
}

async function wakeLatency(mode: 'uv' | 'threadpool'): Promise<void> {
  const loop = new EpollLoop(mode);
  const efd = Number(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  const samples: number[] = [];
  let sentAt = 0;
  let next: () => void = () => {};
  loop.watch(efd, EPOLLIN, () => {
    eventfdRead(efd);
    samples.push((performance.now() - sentAt) * 1000);
    next();
  });
  for (let i = 0; i < 2000; i++) {
    await new Promise<void>((resolve) => {
      next = resolve;
      // Let the loop re-arm epoll_wait on the threadpool first.
      setTimeout(() => { sentAt = performance.now(); eventfdWrite(efd); }, 0);
    });
  }
  samples.sort((a, b) => a - b);
  console.log(`epoll wake (${mode}) -> handler on main thread: p50 ${percentile(samples, 0.5).toFixed(1)} us, p99 ${percentile(samples, 0.99).toFixed(1)} us (${samples.length} wakes)`);
  loop.close();
  close(efd);
}

void main();
