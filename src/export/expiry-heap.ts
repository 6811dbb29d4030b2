// A binary min-heap of (expiry time, table key): the exporter's schedule of deletes.
//
// Entries are never updated in place: a refreshed grant pushes a new entry and the old one is recognised as
// stale when it reaches the top (its time no longer matches the grant's), which keeps push and pop
// O(log n). compact() rebuilds the heap from the live entries when stale ones pile up.
// Security: none; a data structure over keys the exporter already checked.

export interface HeapEntry {
  readonly at: number;
  readonly key: string;
}

export class ExpiryHeap {
  private items: HeapEntry[] = [];

  get size(): number {
    return this.items.length;
  }

  peek(): HeapEntry | undefined {
    return this.items[0];
  }

  push(at: number, key: string): void {
    const a = this.items;
    a.push({ at, key });
    let i = a.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (a[parent]!.at <= a[i]!.at) break;
      [a[parent], a[i]] = [a[i]!, a[parent]!];
      i = parent;
    }
  }

  pop(): HeapEntry | undefined {
    const a = this.items;
    if (a.length === 0) return undefined;
    const top = a[0]!;
    const last = a.pop()!;
    if (a.length > 0) {
      a[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < a.length && a[l]!.at < a[m]!.at) m = l;
        if (r < a.length && a[r]!.at < a[m]!.at) m = r;
        if (m === i) break;
        [a[m], a[i]] = [a[i]!, a[m]!];
        i = m;
      }
    }
    return top;
  }

  /** Replaces the contents with exactly `entries` (the live ones). */
  reset(entries: Iterable<HeapEntry>): void {
    this.items = [];
    for (const e of entries) this.push(e.at, e.key);
  }
}
