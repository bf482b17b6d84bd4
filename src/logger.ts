/**
 * The one logging interface of the library: the router, the Redis broker and
 * the standalone server all log through a {@link Logger}, so an app can route
 * everything into its own logger (pino, winston, …) with one option.
 *
 * A leaf module (no imports) so every other module may use it without cycles.
 * Nothing is ever logged with a token, a request body or a query string in it:
 * callers pass paths and error codes, never request lines.
 */

/** Extra structured fields of one log line (JSON lines keep them as keys). */
export type LogFields = Readonly<Record<string, string | number | boolean | undefined>>;

/** What the library needs from a logger; pino, winston and `console` fit with a one-line adapter. */
export interface Logger {
  debug(message: string, fields?: LogFields): void;
  info(message: string, fields?: LogFields): void;
  warn(message: string, fields?: LogFields): void;
  error(message: string, fields?: LogFields): void;
}

export type LogLevel = "debug" | "info" | "warn" | "error" | "silent";

/** Levels in increasing severity; a logger at level L writes L and everything after it. */
export const LOG_LEVELS: readonly LogLevel[] = Object.freeze(["debug", "info", "warn", "error", "silent"]);

export interface ConsoleLoggerOptions {
  /** Least severe level written. Defaults to `"warn"`. */
  level?: LogLevel;
  /** `"text"`: `sse-server: message key=value`; `"json"`: one JSON object per line. Defaults to `"text"`. */
  format?: "text" | "json";
  /** Prefix of text lines and `name` of JSON lines. Defaults to `"sse-server"`. */
  name?: string;
  /** Where debug and info lines go. Defaults to `process.stdout`. */
  stdout?: { write(line: string): unknown };
  /** Where warn and error lines go. Defaults to `process.stderr`. */
  stderr?: { write(line: string): unknown };
}

const noop = (): void => undefined;

/** A logger that writes nothing (`logger: SILENT_LOGGER` silences the library). */
export const SILENT_LOGGER: Logger = Object.freeze({ debug: noop, info: noop, warn: noop, error: noop });

function textField(value: string | number | boolean): string {
  const text = String(value);
  // Quote only when needed, so plain lines stay easy to grep.
  return /^[^\s"=]+$/.test(text) ? text : JSON.stringify(text);
}

/**
 * A logger writing to the process's stdout/stderr: debug and info to stdout,
 * warn and error to stderr (so a service manager can tell them apart).
 */
export function createConsoleLogger(options: ConsoleLoggerOptions = {}): Logger {
  const level = options.level ?? "warn";
  const min = LOG_LEVELS.indexOf(level);
  if (min === -1) throw new TypeError(`log level must be one of ${LOG_LEVELS.join(", ")}; got ${String(level)}`);
  const json = options.format === "json";
  const name = options.name ?? "sse-server";
  const line = (lvl: LogLevel, message: string, fields: LogFields | undefined): string => {
    if (json) return JSON.stringify({ time: new Date().toISOString(), level: lvl, name, msg: message, ...fields }) + "\n";
    let text = `${name}: ${message}`;
    if (fields !== undefined) {
      for (const [key, value] of Object.entries(fields)) if (value !== undefined) text += ` ${key}=${textField(value)}`;
    }
    return text + "\n";
  };
  const at = (lvl: LogLevel, out: () => { write(line: string): unknown }) =>
    LOG_LEVELS.indexOf(lvl) < min ? noop : (message: string, fields?: LogFields) => void out().write(line(lvl, message, fields));
  // Streams are looked up per line, not captured: tests and hosts may swap process.stdout.
  const stdout = () => options.stdout ?? process.stdout;
  const stderr = () => options.stderr ?? process.stderr;
  return Object.freeze({ debug: at("debug", stdout), info: at("info", stdout), warn: at("warn", stderr), error: at("error", stderr) });
}

/** The library's default: silent except warnings and errors, as text on stderr. */
export const DEFAULT_LOGGER: Logger = createConsoleLogger({ level: "warn" });
