// The example page: plain browser JavaScript, no build step.
//
// Subscribing: `new EventSource("subscribe?topics=a,b")`. The backend checks
// the topics against its allowlist, mints a token and answers 307 to
// `/sse-server/events?token=…`; the browser follows the redirect.
//
// Connection state comes from EventSource itself (readyState + onopen/onerror):
//   connecting    first attempt under way
//   open          stream is up
//   reconnecting  the stream broke; the browser retries after the server's
//                 `retry:` delay. If a retry gets an HTTP error (e.g. a proxy's
//                 502 while the app restarts), EventSource gives up for good, so
//                 this page then opens a new one itself, with backoff and jitter.
//   closed        the backend refused the subscription (e.g. 403); no retry.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const MAX_ROWS = 200;

  /** A small debug handle for the devtools console: `sseExample.log`, `.states`, `.events`. */
  const debug = { states: [], log: [], events: 0 };
  window.sseExample = debug;

  let config = { topics: [], eventNames: ["message"], basePath: "/sse-server" };
  let source = null; // the current EventSource
  let wanted = null; // topics the person asked for, or null when disconnected
  let everOpen = false; // has the current subscription been open at least once?
  let retryTimer = null;
  let retryAttempt = 0;
  const eventNames = new Set(); // names we listen for (EventSource needs one listener per name)

  // ---- connection state -------------------------------------------------

  const LABELS = { idle: "not connected", connecting: "connecting", open: "open", reconnecting: "reconnecting", closed: "closed" };

  function setState(state, detail) {
    const el = $("state");
    el.dataset.state = state;
    el.textContent = LABELS[state];
    if (detail !== undefined) $("state-detail").textContent = detail;
    const last = debug.states[debug.states.length - 1];
    if (last !== state) debug.states.push(state);
    debug.log.push(`${new Date().toISOString()} ${state}: ${$("state-detail").textContent}`);
    if (debug.log.length > 100) debug.log.shift();
    $("connect").textContent = state === "idle" || state === "closed" ? "Connect" : "Reconnect";
    $("disconnect").disabled = state === "idle";
  }

  function subscribeUrl(topics) {
    return "subscribe?topics=" + encodeURIComponent(topics.join(","));
  }

  function connect() {
    const topics = selectedTopics();
    disconnect();
    if (topics.length === 0) {
      $("state-detail").textContent = "Pick at least one topic.";
      return;
    }
    wanted = topics;
    everOpen = false;
    retryAttempt = 0;
    open("connecting");
  }

  function disconnect() {
    wanted = null;
    clearTimeout(retryTimer);
    retryTimer = null;
    if (source) source.close();
    source = null;
    setState("idle", "Not connected.");
  }

  function open(state) {
    const topics = wanted;
    const url = subscribeUrl(topics);
    const es = new EventSource(url);
    source = es;
    for (const name of eventNames) es.addEventListener(name, onEvent);
    es.addEventListener("sse:reset", onReset);
    setState(state, state === "connecting" ? `GET ${url} → 307 → ${config.basePath}/events?token=…` : undefined);

    es.onopen = () => {
      if (es !== source) return;
      const again = everOpen || retryAttempt > 0;
      everOpen = true;
      retryAttempt = 0;
      setState("open", `Subscribed to ${topics.join(", ")}: GET ${url} → 307 → ${config.basePath}/events?token=…`);
      if (again) notice("reconnected: a real app re-fetches its state from the backend now");
    };

    es.onerror = () => {
      if (es !== source) return;
      if (es.readyState === EventSource.CONNECTING) {
        // The browser retries by itself after the server's retry: delay.
        setState("reconnecting", "Connection lost; the browser is retrying…");
        return;
      }
      // CLOSED: the browser gave up (an HTTP error or a non-event-stream answer).
      es.close();
      source = null;
      explainAndRetry(topics);
    };
  }

  /** After EventSource gave up: find out why, then retry later or stop. */
  async function explainAndRetry(topics) {
    let why = "server unreachable";
    try {
      // Ask /subscribe alone (no stream): a 4xx means "not allowed", don't retry.
      const res = await fetch(subscribeUrl(topics), { redirect: "manual", cache: "no-store" });
      if (res.status >= 400 && res.status < 500) {
        const body = await res.json().catch(() => ({}));
        if (wanted === topics) setState("closed", `Refused (${res.status}): ${body.message || res.statusText}`);
        return;
      }
      if (res.status >= 500) why = `the server answered ${res.status}`;
    } catch {
      // network error: keep "server unreachable"
    }
    if (wanted !== topics) return; // disconnected or re-subscribed meanwhile
    // Exponential backoff with jitter, so a restart does not bring every page back at once.
    const base = Math.min(15000, 1000 * 2 ** retryAttempt);
    const delay = Math.round(base * (0.5 + Math.random()));
    retryAttempt++;
    setState("reconnecting", `${why}; retrying in ${(delay / 1000).toFixed(1)} s (attempt ${retryAttempt})`);
    retryTimer = setTimeout(() => {
      retryTimer = null;
      if (wanted === topics) open("reconnecting");
    }, delay);
  }

  // ---- events -------------------------------------------------------------

  function listenFor(name) {
    if (eventNames.has(name)) return;
    eventNames.add(name);
    const opt = document.createElement("option");
    opt.value = name;
    $("event-names").append(opt);
    if (source) source.addEventListener(name, onEvent);
  }

  function onEvent(e) {
    addRow(e.type, e.data, e.lastEventId, false);
  }

  function onReset(e) {
    // The hub has no history for our Last-Event-ID (it restarted, or we were gone too long).
    addRow(e.type, e.data, e.lastEventId, true);
    notice("sse:reset: events may have been missed; a real app rebuilds its state now");
  }

  function notice(text) {
    addRow("(page)", text, "", true);
  }

  function addRow(name, data, id, isNotice) {
    const tr = document.createElement("tr");
    tr.className = isNotice ? "notice fresh" : "event fresh";
    tr.dataset.event = name;
    const cells = [
      ["time", new Date().toLocaleTimeString([], { hour12: false }) + "." + String(Date.now() % 1000).padStart(3, "0")],
      ["name", name],
      ["data", data],
      ["id", id || ""],
    ];
    for (const [cls, text] of cells) {
      const td = document.createElement("td");
      td.className = cls;
      td.textContent = text;
      tr.append(td);
    }
    const body = $("events");
    body.prepend(tr); // newest first
    while (body.rows.length > MAX_ROWS) body.deleteRow(body.rows.length - 1);
    if (!isNotice) debug.events++;
    $("event-count").textContent = String(debug.events);
    $("events-empty").hidden = true;
  }

  // ---- publishing ---------------------------------------------------------

  async function publish(ev) {
    ev.preventDefault();
    const form = $("publish-form");
    const topic = $("pub-topic").value;
    const event = $("pub-event").value.trim() || `${topic}-update`;
    const data = $("pub-data").value;
    const via = form.elements.via.value;
    listenFor(event); // so this page can show it (EventSource delivers named events to named listeners only)
    const result = $("publish-result");
    result.className = "muted";
    result.textContent = "sending…";
    try {
      const res = await fetch("api/publish", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ topic, event, data, via }),
      });
      const body = await res.json().catch(() => ({}));
      if (!res.ok) throw new Error(body.message || `HTTP ${res.status}`);
      result.className = "ok";
      result.textContent = `sent "${event}" to ${topic} via ${body.via} (${body.ms} ms)`;
    } catch (err) {
      result.className = "bad";
      result.textContent = `not sent: ${err.message}`;
    }
  }

  // ---- setup --------------------------------------------------------------

  function selectedTopics() {
    return [...document.querySelectorAll("#topics input:checked")].map((i) => i.value);
  }

  async function init() {
    try {
      const res = await fetch("api/config", { cache: "no-store" });
      config = await res.json();
    } catch (err) {
      $("topics").textContent = `could not load topics: ${err.message}`;
      return;
    }
    $("base-path").textContent = config.basePath + "/";
    for (const el of document.querySelectorAll(".bp")) el.textContent = config.basePath;

    const topicsBox = $("topics");
    topicsBox.textContent = "";
    const select = $("pub-topic");
    config.topics.forEach((topic, i) => {
      const label = document.createElement("label");
      const box = document.createElement("input");
      box.type = "checkbox";
      box.value = topic;
      box.name = "topic";
      box.checked = i < 2;
      box.addEventListener("change", () => {
        if (wanted !== null) connect(); // re-subscribe with the new set
      });
      label.append(box, " " + topic);
      topicsBox.append(label);
      select.append(new Option(topic, topic));
    });
    for (const name of config.eventNames) listenFor(name);

    const eventInput = $("pub-event");
    let edited = false;
    eventInput.addEventListener("input", () => (edited = eventInput.value !== ""));
    const suggest = () => {
      if (!edited) eventInput.value = `${select.value}-update`;
    };
    select.addEventListener("change", suggest);
    suggest();

    $("subscribe-form").addEventListener("submit", (e) => {
      e.preventDefault();
      connect();
    });
    $("disconnect").addEventListener("click", disconnect);
    $("publish-form").addEventListener("submit", publish);
    $("clear").addEventListener("click", () => {
      $("events").textContent = "";
      debug.events = 0;
      $("event-count").textContent = "0";
      $("events-empty").hidden = false;
    });
    setState("idle");
    document.body.dataset.ready = "true";
  }

  init();
})();
