/**
 * `Accept-Encoding` negotiation (RFC 9110 §12.5.3), pure. Only the question
 * the event stream asks: may this response be gzip-coded?
 */

/** A qvalue: `0` to `1` with at most three decimals (RFC 9110 §12.4.2). */
const QVALUE = /^(?:0(?:\.\d{0,3})?|1(?:\.0{0,3})?)$/;

/**
 * Whether the header accepts `gzip`: listed as `gzip` or `x-gzip` (its alias,
 * RFC 9110 §8.4.1.3) with q > 0, or not listed and `*` with q > 0. So
 * `gzip;q=0` is a refusal even next to `*`, and no header at all means plain
 * (a client that sends none may still prefer identity; RFC 9110 allows either).
 * A malformed qvalue makes its entry count as not acceptable.
 */
export function acceptsGzip(header: string | readonly string[] | undefined): boolean {
  if (header === undefined) return false;
  const text = typeof header === "string" ? header : header.join(",");
  let gzip: number | undefined;
  let star: number | undefined;
  for (const element of text.split(",")) {
    const [rawName, ...params] = element.split(";");
    const name = rawName!.trim().toLowerCase();
    if (name !== "gzip" && name !== "x-gzip" && name !== "*") continue;
    let q = 1;
    for (const param of params) {
      const eq = param.indexOf("=");
      if (eq === -1 || param.slice(0, eq).trim().toLowerCase() !== "q") continue;
      const value = param.slice(eq + 1).trim();
      q = QVALUE.test(value) ? Number(value) : 0;
    }
    // With several entries for one coding, the most favourable one counts.
    if (name === "*") star = Math.max(star ?? 0, q);
    else gzip = Math.max(gzip ?? 0, q);
  }
  return gzip !== undefined ? gzip > 0 : star !== undefined && star > 0;
}
