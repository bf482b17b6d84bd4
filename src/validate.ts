/**
 * Validators for options, shared by every part that owns options (router,
 * brokers, publisher, CLI). A leaf module (errors only), so nothing that
 * validates its options pulls in the modules that use them.
 */
import { SseError } from "./errors";

/** Throws `invalid_option`: a configuration error, reported at startup. */
export function invalid(message: string): never {
  throw new SseError("invalid_option", message);
}

/**
 * Turns the secret into its 32 key bytes, or throws a clear error. Never
 * silently pads, truncates or falls back: a wrong secret must fail at startup.
 */
export function parseSecret(secret: unknown, what = "secret"): Buffer {
  if (typeof secret === "string") {
    if (!/^[0-9a-fA-F]{64}$/.test(secret)) {
      invalid(`${what} must be 64 hex characters (32 bytes), e.g. from \`openssl rand -hex 32\`; got ${secret.length} characters${secret.length === 64 ? " with non-hex characters" : ""}`);
    }
    return Buffer.from(secret, "hex");
  }
  if (secret instanceof Uint8Array) {
    if (secret.length !== 32) invalid(`${what} must be 32 bytes; got ${secret.length}`);
    return Buffer.from(secret);
  }
  return invalid(`${what} is required: 64 hex characters or a 32-byte Buffer`);
}

/** An optional integer option in `[min, max]`, or `fallback`; anything else throws `invalid_option`. */
export function integerOption(name: string, value: unknown, fallback: number, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (value === undefined) return fallback;
  if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > max) {
    const range = max === Number.MAX_SAFE_INTEGER ? `>= ${min}` : `between ${min} and ${max}`;
    invalid(`${name} must be an integer ${range}; got ${String(value)}`);
  }
  return value;
}

/**
 * Throws `invalid_option` naming the first key of `options` that is not in
 * `known`, with the known key it most likely meant (same letters ignoring
 * case, e.g. `tokenTTL` → `tokenTtl`).
 */
export function rejectUnknownKeys(what: string, options: object, known: readonly string[]): void {
  for (const key of Object.keys(options)) {
    if (known.includes(key)) continue;
    const meant = known.find((k) => k.toLowerCase() === key.toLowerCase());
    invalid(`${what}: unknown option "${key}"${meant === undefined ? "" : `; did you mean "${meant}"?`} (known: ${known.join(", ")})`);
  }
}
