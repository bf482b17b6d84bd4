/**
 * A burst of large forged tokens (the CPU-exhaustion attack of issues 8 and
 * 15) is rejected with 401 while a live subscriber keeps receiving every
 * event. (The delivery-latency cost of a sustained flood is measured by
 * `npm run bench:forged`, not here: timing has no place in a test.)
 */
import http from "node:http";
import { brancaEncode } from "../src/tokens/branca";
import { subscribeToken } from "../src/tokens";
import { RawStream, SECRET, parseEvents, startServer, type TestServer } from "./helpers/sse";

let srv: TestServer;
beforeAll(async () => {
  srv = await startServer({ retry: 0 });
});
afterAll(async () => {
  await srv.close();
});

/** GET with a raw agent-less request; resolves with status and body. */
function get(path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get(`${srv.base}${path}`, { agent: false }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (d: string) => (body += d));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on("error", reject);
  });
}

test("200 forged subscribe tokens at the 4096-character cap: all 401 token_invalid, the live subscriber misses nothing", async () => {
  const live = new RawStream(`${srv.base}/events?token=${subscribeToken(SECRET, ["live"])}`);
  await live.until((t) => t === ":\n\n");

  // A genuine large token (valid version byte and header) with one character
  // changed in the ciphertext: only the AEAD tag check can reject it, after
  // the full base62 decode, which is the expensive path.
  const big = brancaEncode(Buffer.from(SECRET, "hex"), Buffer.alloc(2_990, 0x61));
  expect(big.length).toBeGreaterThan(4_000);
  expect(big.length).toBeLessThanOrEqual(4_096); // maxSubscribeTokenLength
  const forged = (i: number) => {
    const at = 200 + ((i * 97) % (big.length - 400));
    return big.slice(0, at) + (big[at] === "z" ? "y" : "z") + big.slice(at + 1);
  };

  let n = 0;
  const publisher = setInterval(() => {
    void srv.router.publish([{ topic: "live", event: "tick", data: String(n++) }]);
  }, 10);
  try {
    const statuses: number[] = [];
    for (let round = 0; round < 25; round++) {
      const batch = await Promise.all(Array.from({ length: 8 }, (_, j) => get(`/events?token=${forged(round * 8 + j)}`)));
      for (const r of batch) {
        statuses.push(r.status);
        expect(JSON.parse(r.body).error).toBe("token_invalid");
      }
    }
    expect(statuses).toEqual(Array(200).fill(401));
    // Longer ones are refused before any decoding.
    const long = await get(`/events?token=${big}${big.slice(0, 10_000)}`);
    expect([long.status, JSON.parse(long.body).error]).toEqual([401, "token_too_long"]);
  } finally {
    clearInterval(publisher);
  }
  const published = n;
  await live.until((t) => parseEvents(t).length === published, 5000);
  expect(parseEvents(live.text).map((e) => Number(e.data))).toEqual(Array.from({ length: published }, (_, i) => i));
  expect(published).toBeGreaterThan(5);
  live.close();
}, 60_000);
