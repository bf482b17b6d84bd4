/**
 * A real `gc()` for memory tests, without running jest with --expose-gc:
 * V8 lets a flag be set at run time, and a fresh context then sees `gc`.
 */
import v8 from "node:v8";
import vm from "node:vm";

function findGc(): (() => void) | undefined {
  try {
    v8.setFlagsFromString("--expose-gc");
    const gc = vm.runInNewContext("gc") as unknown;
    return typeof gc === "function" ? (gc as () => void) : undefined;
  } catch {
    return undefined;
  }
}

/** `gc()`, or `undefined` where the runtime does not allow it (tests then use looser bounds). */
export const gc: (() => void) | undefined = findGc();

/** Collects garbage twice (weak references and finalizers need the second), when possible. */
export function settle(): void {
  gc?.();
  gc?.();
}

/** Live JS heap plus memory outside it (Buffers, socket buffers), after collecting garbage when possible. */
export function liveBytes(): number {
  settle();
  const m = process.memoryUsage();
  return m.heapUsed + m.external;
}
