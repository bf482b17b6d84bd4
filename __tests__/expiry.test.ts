/**
 * The expiry buckets on their own (pure, no timers): deadlines rounded up to
 * their bucket, never due early, taken in time order, deletable in O(1).
 */
import { ExpiryBuckets } from "../src/core/expiry";

test("items are due at their bucket (rounded up, never early), earliest first", () => {
  const b = new ExpiryBuckets<string>(1000);
  expect(b.add("c", 3000)).toBe(3000);
  expect(b.add("a", 1001)).toBe(2000);
  expect(b.add("b", 2000)).toBe(2000);
  expect(b.add("d", 2500)).toBe(3000);
  expect(b.size).toBe(4);
  expect(b.next()).toBe(2000);

  const due: Array<[string, number]> = [];
  b.takeDue(1999, (item, key) => due.push([item, key]));
  expect(due).toEqual([]);
  b.takeDue(2000, (item, key) => due.push([item, key]));
  expect(due).toEqual([["a", 2000], ["b", 2000]]);
  expect(b.size).toBe(2);
  expect(b.next()).toBe(3000);
  b.takeDue(10_000, (item, key) => due.push([item, key]));
  expect(due.slice(2)).toEqual([["c", 3000], ["d", 3000]]);
  expect(b.size).toBe(0);
  expect(b.next()).toBeUndefined();
});

test("delete removes an item; an emptied bucket is skipped, also when re-created", () => {
  const b = new ExpiryBuckets<number>(10);
  const k1 = b.add(1, 5);
  const k2 = b.add(2, 25);
  b.delete(1, k1);
  b.delete(1, k1); // twice: a no-op
  b.delete(2, 999); // wrong key: a no-op
  expect(b.size).toBe(1);
  expect(b.next()).toBe(30);
  b.add(3, 7); // bucket 10 again, after it was emptied
  expect(b.next()).toBe(10);
  const due: number[] = [];
  b.takeDue(100, (item) => due.push(item));
  expect(due).toEqual([3, 2]);
  expect(k2).toBe(30);
});

test("callbacks may reschedule into a later bucket (notice, then end)", () => {
  const b = new ExpiryBuckets<string>(1000);
  b.add("s", 1000);
  const seen: Array<[string, number]> = [];
  b.takeDue(1000, (item, key) => {
    seen.push([item, key]);
    b.add(item, key + 5000);
  });
  expect(seen).toEqual([["s", 1000]]);
  expect(b.next()).toBe(6000);
  expect(b.size).toBe(1);
});

test("many items in random order come out sorted by bucket", () => {
  const b = new ExpiryBuckets<number>(7);
  const times = Array.from({ length: 2000 }, (_, i) => (i * 7919) % 5003);
  times.forEach((t, i) => b.add(i, t));
  const out: number[] = [];
  b.takeDue(Infinity, (_item, key) => out.push(key));
  expect(out).toHaveLength(2000);
  expect([...out].sort((x, y) => x - y)).toEqual(out);
});

test("resolution must be a positive integer", () => {
  expect(() => new ExpiryBuckets(0)).toThrow(RangeError);
  expect(() => new ExpiryBuckets(1.5)).toThrow(RangeError);
});
