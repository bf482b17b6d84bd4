/**
 * Coarse expiry buckets (issue 13): deadlines of many items, walked by ONE
 * timer instead of a timer per item. Pure data structure, no timers or I/O,
 * so it is unit-tested on its own (__tests__/expiry.test.ts) and the hub owns
 * the single timer that walks it.
 *
 * A deadline is rounded UP to its bucket (a multiple of `resolution` ms), so
 * an item is never due early, at most `resolution` late. Buckets are Sets
 * keyed by that time; a min-heap of bucket times says which is next. Adding
 * and deleting an item are O(1) (plus O(log buckets) when a bucket is
 * created); the heap holds one number per bucket, not per item, so 100k items
 * expiring in the same second cost one Set and one heap entry.
 */
export class ExpiryBuckets<T> {
  private readonly buckets = new Map<number, Set<T>>();
  /** Bucket times, min-heap. May hold times of buckets already emptied (skipped lazily). */
  private readonly heap: number[] = [];
  private count = 0;

  /** @param resolution Bucket width in ms (deadlines are rounded up to a multiple of it). */
  constructor(readonly resolution: number) {
    if (!Number.isInteger(resolution) || resolution < 1) throw new RangeError("resolution must be an integer >= 1");
  }

  /** Items currently scheduled. */
  get size(): number {
    return this.count;
  }

  /**
   * Schedules `item` at `at` (unix ms). Returns the bucket key, which the
   * caller keeps to {@link delete} the item later (an item sits in one bucket).
   */
  add(item: T, at: number): number {
    const key = Math.ceil(at / this.resolution) * this.resolution;
    let bucket = this.buckets.get(key);
    if (bucket === undefined) {
      this.buckets.set(key, (bucket = new Set()));
      heapPush(this.heap, key);
    }
    if (!bucket.has(item)) {
      bucket.add(item);
      this.count++;
    }
    return key;
  }

  /** Unschedules `item` from bucket `key` (as returned by {@link add}); a no-op if it is not there. */
  delete(item: T, key: number): void {
    const bucket = this.buckets.get(key);
    if (bucket === undefined || !bucket.delete(item)) return;
    this.count--;
    // The heap entry stays; it is skipped when it comes up.
    if (bucket.size === 0) this.buckets.delete(key);
  }

  /** Time (unix ms) of the earliest non-empty bucket, or `undefined` when nothing is scheduled. */
  next(): number | undefined {
    const heap = this.heap;
    while (heap.length > 0 && !this.buckets.has(heap[0]!)) heapPop(heap);
    return heap[0];
  }

  /**
   * Removes every bucket due at `now` and returns its items with the bucket
   * key, earliest bucket first. Callbacks may add items again (to a later
   * bucket): the due buckets are detached before `due` is called.
   */
  takeDue(now: number, due: (item: T, key: number) => void): void {
    const taken: Array<[number, Set<T>]> = [];
    for (let key = this.next(); key !== undefined && key <= now; key = this.next()) {
      heapPop(this.heap);
      const bucket = this.buckets.get(key)!;
      this.buckets.delete(key);
      this.count -= bucket.size;
      taken.push([key, bucket]);
    }
    for (const [key, bucket] of taken) for (const item of bucket) due(item, key);
  }
}

function heapPush(heap: number[], value: number): void {
  let i = heap.push(value) - 1;
  while (i > 0) {
    const parent = (i - 1) >> 1;
    if (heap[parent]! <= value) break;
    heap[i] = heap[parent]!;
    i = parent;
  }
  heap[i] = value;
}

function heapPop(heap: number[]): void {
  const last = heap.pop()!;
  if (heap.length === 0) return;
  let i = 0;
  for (;;) {
    const left = 2 * i + 1;
    if (left >= heap.length) break;
    const right = left + 1;
    const child = right < heap.length && heap[right]! < heap[left]! ? right : left;
    if (heap[child]! >= last) break;
    heap[i] = heap[child]!;
    i = child;
  }
  heap[i] = last;
}
