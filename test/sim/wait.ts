// Waiting in tests: a sleep, and polling a condition until it holds.
export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Poll `cond` every `everyMs` until it holds or `ms` pass; returns its last value. */
export async function until(cond: () => boolean | Promise<boolean>, ms = 5000, everyMs = 20): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await cond()) return true;
    await sleep(everyMs);
  }
  return cond();
}
