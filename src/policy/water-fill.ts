// Dividing an amount among items in proportion to weight x spare, none above
// its spare (water-filling). Shared by the host policy's split and its rebalance.

/**
 * Divide `need` in proportion to weight x spare, no VM above its spare:
 * water-filling, so what a capped VM cannot give goes to the others.
 */
export function waterFill(need: number, items: ReadonlyArray<{ key: string; weight: number; spare: number }>): Map<string, number> {
  const out = new Map<string, number>(items.map((i) => [i.key, 0]));
  let left = need;
  let open = items.filter((i) => i.spare > 0 && i.weight > 0);
  while (left > 0.5 && open.length > 0) {
    const total = open.reduce((n, i) => n + i.weight * (i.spare - out.get(i.key)!), 0);
    if (total <= 0) break;
    let given = 0;
    const next: typeof open = [];
    for (const i of open) {
      const has = i.spare - out.get(i.key)!;
      const want = (left * i.weight * has) / total;
      const take = Math.min(has, want);
      out.set(i.key, out.get(i.key)! + take);
      given += take;
      if (has - take > 0.5) next.push(i);
    }
    left -= given;
    if (given <= 0.5) break;
    open = next;
  }
  for (const [k, v] of out) out.set(k, Math.floor(v));
  return out;
}
