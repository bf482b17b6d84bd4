// The example page: a browser ES module, no build step. `sse-hub/client` is
// the package's browser client, mapped to the app's copy by the import map in
// index.html.
//
// Topics: frames carry no topic, so the app names each event after its topic
// (`weather-update`). The page listens only for its own topics' names: with
// tab sharing the connection carries the union of every tab's topics, and the
// name is what lets each tab show just its own, with the topic, whatever the
// data is (a Python backend's plain text arrives unchanged).
import { createSseClient } from "sse-hub/client";

const $ = (id) => document.getElementById(id);
const MAX_ROWS = 200;
const SUFFIX = "-update";
const topicOf = (name) => (name.endsWith(SUFFIX) ? name.slice(0, -SUFFIX.length) : "");

/** A small debug handle for the devtools console (and the tests). */
const debug = { states: [], log: [], events: 0, resets: 0, rotations: 0, leader: false };
window.sseExample = debug;

let config = { topics: [], basePath: "/sse-server" };
let client = null;
/** Token fetches of the current client in this tab; each after the first is a rotation. */
let fetches = 0;

const LABELS = { idle: "not connected", connecting: "connecting", open: "open", reconnecting: "reconnecting", closed: "closed" };

function log(text) {
  debug.log.push(`${new Date().toISOString()} ${text}`);
  if (debug.log.length > 100) debug.log.shift();
}

function setState(state, detail) {
  const el = $("state");
  el.dataset.state = state;
  el.textContent = LABELS[state];
  if (detail !== undefined) $("state-detail").textContent = detail;
  if (debug.states[debug.states.length - 1] !== state) debug.states.push(state);
  log(`${state}: ${$("state-detail").textContent}`);
  $("connect").textContent = state === "idle" || state === "closed" ? "Connect" : "Reconnect";
  $("disconnect").disabled = state === "idle" || state === "closed";
}

function showFacts() {
  const leader = client !== null && client.leader;
  debug.leader = leader;
  $("leader").textContent = client === null ? "–" : leader ? "leads: holds the connection" : "follows: another tab leads";
  $("last-id").textContent = client?.lastEventId ?? "–";
  $("resets").textContent = String(debug.resets);
  $("rotations").textContent = String(debug.rotations);
}

/** The client's token provider: the backend checks the topics and mints a subscribe token. */
async function fetchToken(topics) {
  const res = await fetch("api/sse-token?topics=" + encodeURIComponent(topics.join(",")), { cache: "no-store" });
  if (!res.ok) {
    const body = await res.json().catch(() => ({}));
    const message = `Refused (${res.status}): ${body.message || res.statusText}`;
    // Not allowed is final; anything else (e.g. a proxy's 502 while the app restarts) the client retries.
    if (res.status >= 400 && res.status < 500) {
      disconnect();
      setState("closed", message);
    }
    throw new Error(message);
  }
  if (++fetches > 1) debug.rotations++;
  showFacts();
  return res.text();
}

function connect(topics) {
  disconnect();
  if (topics.length === 0) {
    $("state-detail").textContent = "Pick at least one topic.";
    return;
  }
  fetches = 0;
  const detail = `Subscribed to ${topics.join(", ")}`;
  client = createSseClient({
    url: config.basePath + "/events",
    topics,
    token: fetchToken,
    onState: (state) => {
      setState(state, state === "open" ? detail : undefined);
      showFacts();
    },
    onReset: ({ reason }) => {
      debug.resets++;
      notice(`sse:reset (${reason}): events may have been missed; a real app reloads its state now`);
      showFacts();
    },
    // Show the data as sent, not JSON-parsed.
    parse: (_name, data) => data,
  });
  for (const topic of topics) {
    const name = topic + SUFFIX;
    client.on(name, (data, id) => {
      addRow({ topic, name, data, id });
      showFacts();
    });
  }
  setState("connecting", `${detail}: fetching a token…`);
  showFacts();
}

function disconnect() {
  if (client === null) return;
  const c = client;
  client = null;
  c.close();
  setState("idle", "Not connected.");
  showFacts();
}

function notice(text) {
  addRow({ topic: "", name: "(page)", data: text, id: "" }, true);
}

function addRow({ topic, name, data, id }, isNotice = false) {
  const li = document.createElement("li");
  li.className = isNotice ? "notice" : "event";
  li.dataset.topic = topic;
  const time = new Date().toLocaleTimeString([], { hour12: false });
  for (const [cls, text] of [["topic", topic || "notice"], ["name", name], ["time", time], ["data", data], ["id", id ? "id " + id : ""]]) {
    const span = document.createElement("span");
    span.className = cls;
    span.textContent = text;
    li.append(span);
  }
  const list = $("events");
  list.prepend(li); // newest first
  while (list.children.length > MAX_ROWS) list.lastElementChild.remove();
  if (!isNotice) debug.events++;
  $("event-count").textContent = String(debug.events);
  $("events-empty").hidden = true;
}

async function publish(ev) {
  ev.preventDefault();
  const topic = $("pub-topic").value;
  const data = $("pub-data").value;
  const via = $("publish-form").elements.via.value;
  const result = $("publish-result");
  result.className = "muted";
  result.textContent = "sending…";
  try {
    const res = await fetch("api/publish", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ topic, data, via }),
    });
    const body = await res.json().catch(() => ({}));
    if (!res.ok) throw new Error(body.message || `HTTP ${res.status}`);
    result.className = "ok";
    result.textContent = `sent to ${topic} via ${body.via} (${body.ms} ms)`;
  } catch (err) {
    result.className = "bad";
    result.textContent = `not sent: ${err.message}`;
  }
}

/** How many streams the server holds (its /health): one per browser, however many tabs. */
async function showStreams() {
  try {
    const res = await fetch(config.basePath + "/health", { cache: "no-store" });
    $("streams").textContent = String((await res.json()).subscribers);
  } catch {
    $("streams").textContent = "?";
  }
}

function selectedTopics() {
  return [...document.querySelectorAll("#topics input:checked")].map((i) => i.value);
}

async function init() {
  try {
    config = await (await fetch("api/config", { cache: "no-store" })).json();
  } catch (err) {
    $("topics").textContent = `could not load topics: ${err.message}`;
    return;
  }
  $("base-path").textContent = config.basePath + "/";
  $("health-link").href = config.basePath + "/health";
  for (const el of document.querySelectorAll(".bp")) el.textContent = config.basePath;

  // `/?topics=weather,news` connects at once (to exactly those: a topic the
  // backend does not allow shows its refusal).
  const fromUrl = new URLSearchParams(location.search).get("topics");
  const wanted = fromUrl === null ? null : fromUrl.split(",").map((t) => t.trim()).filter(Boolean);

  const box = $("topics");
  box.textContent = "";
  const select = $("pub-topic");
  config.topics.forEach((topic, i) => {
    const label = document.createElement("label");
    const input = document.createElement("input");
    input.type = "checkbox";
    input.value = topic;
    input.name = "topic";
    input.checked = wanted === null ? i < 2 : wanted.includes(topic);
    input.addEventListener("change", () => {
      if (client !== null) connect(selectedTopics()); // re-subscribe with the new set
    });
    label.append(input, " " + topic);
    box.append(label);
    select.append(new Option(topic, topic));
  });

  $("subscribe-form").addEventListener("submit", (e) => {
    e.preventDefault();
    connect(selectedTopics());
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
  showFacts();
  void showStreams();
  setInterval(showStreams, 3000);
  if (wanted !== null) connect(wanted);
  document.body.dataset.ready = "true";
}

void init();
