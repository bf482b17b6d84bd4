/**
 * Values that start with a space survive real SSE parsers (issue 11): the npm
 * `eventsource` package and Chromium's own EventSource receive every event
 * name and data line exactly as published. A parser strips one space after
 * the colon, so the frame carries one extra space for such values only.
 * Also records what clients make of an empty event name (the default type
 * `message`) and of a name of only spaces (delivered under those spaces).
 */
import { EventSource } from "eventsource";
import { subscribeToken } from "../src/tokens";
import { launchChromium, type Chromium } from "./helpers/chromium";
import { SECRET, startServer, type TestServer } from "./helpers/sse";

const PUBLISHED = [
  { topic: "sp", event: " lead", data: " x" },
  { topic: "sp", event: "plain", data: "a\n b\r\n  c\rd " },
  { topic: "sp", event: "   ", data: " " },
  { topic: "sp", event: "\nname", data: "x" },
  { topic: "sp", event: "end", data: "" },
];
/** What a conforming client must see: [type, data] in order. */
const EXPECTED = [
  [" lead", " x"],
  ["plain", "a\n b\n  c\nd "],
  ["   ", " "],
  [" name", "x"], // LF in a name becomes a space, which is then kept
  ["end", ""],
];
const TYPES = [" lead", "plain", "   ", " name", "end"];

// The page callback runs in Chromium; the project is type-checked without the DOM lib.
declare const window: {
  EventSource: new (url: string) => {
    addEventListener(type: string, fn: (e: { type: string; data: string }) => void): void;
    onopen: (() => void) | null;
    close(): void;
  };
  got: string[][];
  opened: boolean;
  source: { close(): void };
};

let srv: TestServer;
let browser: Chromium | undefined;
beforeAll(async () => {
  srv = await startServer({ retry: 0 });
});
afterAll(async () => {
  await browser?.close();
  await srv.close();
});

const url = () => `${srv.base}/events?token=${subscribeToken(SECRET, ["sp"])}`;

test("npm eventsource receives names and data that start with spaces intact", async () => {
  const es = new EventSource(url());
  const got: string[][] = [];
  for (const type of TYPES) es.addEventListener(type, (e) => got.push([e.type, e.data]));
  try {
    await new Promise<void>((resolve, reject) => {
      es.onopen = () => resolve();
      es.onerror = () => reject(new Error("eventsource failed to open"));
    });
    await srv.router.publish(PUBLISHED);
    const deadline = Date.now() + 5000;
    while (got.length < EXPECTED.length && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    expect(got).toEqual(EXPECTED);
  } finally {
    es.close();
  }
});

test("Chromium's EventSource receives names and data that start with spaces intact", async () => {
  browser = await launchChromium();
  const page = await browser.context.newPage();
  try {
    await page.goto(`${srv.base}/ping`); // any page of the server's origin
    await page.evaluate(
      ({ src, types }) =>
        new Promise<void>((resolve) => {
          window.got = [];
          const es = new window.EventSource(src);
          window.source = es;
          for (const type of types) es.addEventListener(type, (e) => window.got.push([e.type, e.data]));
          es.onopen = () => resolve();
        }),
      { src: url(), types: TYPES },
    );
    await srv.router.publish(PUBLISHED);
    await page.waitForFunction((n) => window.got.length >= n, EXPECTED.length, { timeout: 10_000 });
    expect(await page.evaluate(() => window.got)).toEqual(EXPECTED);
    await page.evaluate(() => window.source.close());
  } finally {
    await page.close();
  }
}, 60_000);
