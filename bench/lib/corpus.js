"use strict";
/*
 * Deterministic corpus of realistic SSE events for the compression bench and
 * tests: market trades, chat messages and presence updates, JSON of 100–600
 * bytes each, framed exactly as the hub frames them (event, data, id). The
 * same seed always gives the same bytes, so results compare across runs.
 */

/** mulberry32: a tiny seeded PRNG (Math.random cannot be seeded). */
function prng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const SYMBOLS = ["BTC-USD", "ETH-USD", "SOL-USD", "AAPL", "MSFT", "NVDA", "TSLA", "EUR-USD", "GBP-USD", "XAU-USD"];
const VENUES = ["XNAS", "XNYS", "BATS", "ARCX", "IEXG"];
const USERS = ["ada", "grace", "linus", "margaret", "dennis", "barbara", "ken", "radia", "edsger", "frances", "tim", "sophie"];
const ROOMS = ["general", "random", "support", "release-2026-12", "incident-4411"];
const STATUSES = ["online", "away", "busy", "offline"];
const WORDS = (
  "the deploy is green again after the rollback we should look at the flaky test before friday can someone review my pull " +
  "request about the cache invalidation thanks for the quick fix latency looks fine on the dashboard now I will write the " +
  "postmortem tomorrow morning please keep the incident channel open until the error rate is back to normal"
).split(" ");

/**
 * `count` SSE frames (Buffers) with their event names and data. Mix: 50 %
 * trades, 30 % chat, 20 % presence. Ids look like the hub's (`<epoch36>-<n>`).
 */
function corpus(count, seed = 42) {
  const rnd = prng(seed);
  const pick = (list) => list[Math.floor(rnd() * list.length)];
  const epoch = (1764655200000).toString(36);
  let ts = 1764655200123;
  const prices = Object.fromEntries(SYMBOLS.map((s, i) => [s, 50 + i * 97.31]));
  const out = [];
  for (let n = 0; n < count; n++) {
    ts += Math.floor(rnd() * 40);
    const r = rnd();
    let event;
    let data;
    if (r < 0.5) {
      const symbol = pick(SYMBOLS);
      prices[symbol] *= 1 + (rnd() - 0.5) / 500;
      event = "trade";
      const trade = {
        type: "trade",
        symbol,
        price: Number(prices[symbol].toFixed(2)),
        size: Math.floor(rnd() * 5000) + 1,
        side: rnd() < 0.5 ? "buy" : "sell",
        venue: pick(VENUES),
        tradeId: `T${(1000000 + n * 7 + Math.floor(rnd() * 7)).toString()}`,
        timestamp: new Date(ts).toISOString(),
        conditions: rnd() < 0.3 ? ["@", "F", "T"].slice(0, 1 + Math.floor(rnd() * 3)) : [],
      };
      if (rnd() < 0.4) Object.assign(trade, { bid: Number((prices[symbol] * 0.9995).toFixed(2)), ask: Number((prices[symbol] * 1.0005).toFixed(2)), bidSize: Math.floor(rnd() * 900), askSize: Math.floor(rnd() * 900) });
      data = JSON.stringify(trade);
    } else if (r < 0.8) {
      const words = Array.from({ length: 4 + Math.floor(rnd() * 40) }, () => pick(WORDS));
      event = "chat";
      data = JSON.stringify({
        type: "chat.message",
        room: pick(ROOMS),
        messageId: `m_${(ts * 13 + n).toString(36)}`,
        author: { id: `u_${pick(USERS)}`, displayName: pick(USERS), avatarUrl: `https://cdn.example.com/avatars/${pick(USERS)}.png` },
        text: words.join(" "),
        sentAt: new Date(ts).toISOString(),
        replyTo: rnd() < 0.2 ? `m_${(ts * 13 - 977).toString(36)}` : null,
        reactions: rnd() < 0.3 ? { "+1": Math.floor(rnd() * 9) } : {},
      });
    } else {
      event = "presence";
      const user = pick(USERS);
      data = JSON.stringify({
        type: "presence",
        userId: `u_${user}`,
        displayName: user,
        status: pick(STATUSES),
        lastSeen: new Date(ts - Math.floor(rnd() * 60000)).toISOString(),
        device: rnd() < 0.5 ? "web" : "mobile",
        room: pick(ROOMS),
      });
    }
    const frame = Buffer.from(`event:${event}\ndata:${data}\nid:${epoch}-${n + 1}\n\n`);
    out.push({ event, data, frame });
  }
  return out;
}

module.exports = { corpus, prng };
