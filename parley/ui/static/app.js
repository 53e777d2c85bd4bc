// The console: channel list, one channel's live log with its claims board,
// presence and the signed-in identity's sessions. It speaks the public HTTP
// API only (ADR-0017); the refresh periods below are the whole "live" story
// for everything but the log, which is pushed over SSE.

import { api, ApiError, auth, channelPath, Tail, tsMillis, ulid } from "./api.js";
import { binCounts, claimBars, sparkline } from "./charts.js";
import { ago, clear, countdown, h, messageItem, who } from "./render.js";

const LIST_EVERY_MS = 3000;
const PEERS_EVERY_MS = 10000;
const SESSIONS_EVERY_MS = 15000;
const CLAIMS_EVERY_MS = 15000;
const HOUR_MS = 3600 * 1000;
const RATE_PAGE = 200; // tail messages read per channel for the rate picture
const BACKLOG = 1000; // most messages of the open channel rendered at first
const RESOLVED_SHOWN = 10;

const $ = (id) => document.getElementById(id);

const state = {
  identity: null, // {agent_id, owner} once a token is accepted
  channels: new Map(), // name -> {desc, seenHead, times: [ms], last}
  current: null, // name of the open channel
  tail: null,
  claims: [],
  resolved: [], // newest last: {target, agent_id, owner, ts}
};

// -- sign-in -----------------------------------------------------------------

async function signIn(token) {
  auth.set(token);
  try {
    const me = await api("GET", "/v1/sessions");
    state.identity = { agent_id: me.agent_id, owner: me.owner };
    renderSessions(me.sessions);
    $("token-error").textContent = "";
    return true;
  } catch (error) {
    auth.clear();
    state.identity = null;
    $("token-error").textContent = error instanceof ApiError && error.status === 401 ? "That token was refused." : "Could not check the token: " + error.message;
    return false;
  }
}

function renderWho() {
  const signedIn = Boolean(state.identity);
  $("token-form").hidden = signedIn;
  $("who").hidden = !signedIn;
  clear($("who-text"));
  if (signedIn) $("who-text").append("Signed in as ", who(state.identity.agent_id, state.identity.owner));
  $("steer-form").hidden = !signedIn || !state.current;
  $("steer-locked").hidden = signedIn || !state.current;
  if (!signedIn) {
    clear($("sessions"));
    $("sessions").appendChild(h("li", { class: "muted", text: "Sign in to see your sessions." }));
  }
}

// -- channel list and the rate picture ----------------------------------------

async function refreshChannels() {
  let listed;
  try {
    listed = await api("GET", "/channels");
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) return showGate();
    return;
  }
  showApp();
  const names = new Set();
  for (const desc of listed.channels) {
    names.add(desc.channel);
    const entry = state.channels.get(desc.channel) || { desc, seenHead: 0, times: [], last: tsMillis(desc.created_ts) };
    entry.desc = desc;
    state.channels.set(desc.channel, entry);
  }
  for (const name of [...state.channels.keys()]) if (!names.has(name)) state.channels.delete(name);
  await Promise.all([...state.channels.values()].filter((e) => e.desc.head > e.seenHead).map(readRecent));
  renderChannels();
}

// Reads only what arrived since the last look (at most RATE_PAGE messages).
async function readRecent(entry) {
  const head = entry.desc.head;
  const from = Math.max(entry.seenHead, head - RATE_PAGE);
  try {
    const page = await api("POST", channelPath(entry.desc.channel, "read"), { cursor: from, limit: RATE_PAGE });
    for (const m of page.messages) {
      const t = tsMillis(m.ts);
      if (Number.isFinite(t)) {
        entry.times.push(t);
        entry.last = t;
      }
    }
    entry.seenHead = from + page.messages.length;
  } catch (_) {
    /* the next refresh tries again */
  }
  const cutoff = Date.now() - HOUR_MS;
  entry.times = entry.times.filter((t) => t >= cutoff);
}

function renderChannels() {
  const list = $("channel-list");
  const now = Date.now();
  const entries = [...state.channels.values()].sort((a, b) => (b.last || 0) - (a.last || 0) || a.desc.channel.localeCompare(b.desc.channel));
  // Keyboard users keep their place across redraws.
  const focused = list.contains(document.activeElement) ? document.activeElement.dataset.channel : null;
  clear(list);
  $("channels-empty").hidden = entries.length > 0;
  for (const entry of entries) {
    const d = entry.desc;
    const counts = binCounts(entry.times, now);
    const total = counts.reduce((a, b) => a + b, 0);
    const button = h(
      "button",
      { type: "button", class: "channel", "data-channel": d.channel, "aria-current": d.channel === state.current ? "true" : null },
      h("span", { class: "name", text: "#" + d.channel }),
      d.purpose ? h("span", { class: "purpose-line", text: d.purpose }) : null,
      h("span", { class: "stats" }, h("span", { text: `head ${d.head}` }), " · ", h("span", { text: (d.head ? "active " : "created ") + ago(entry.last, now) })),
      sparkline(counts, `${total} messages in the last hour in #${d.channel}`),
    );
    button.addEventListener("click", () => {
      location.hash = "#/c/" + encodeURIComponent(d.channel);
    });
    list.appendChild(h("li", {}, button));
    if (d.channel === focused) button.focus();
  }
}

// -- the open channel ------------------------------------------------------------

async function openChannel(name) {
  if (state.tail) state.tail.stop();
  state.tail = null;
  state.current = name;
  state.resolved = [];
  state.claims = [];
  pending = [];
  clear($("log"));
  $("log-title").textContent = name ? "#" + name : "Pick a channel";
  $("channel-purpose").textContent = "";
  $("log-earlier").hidden = true;
  renderWho();
  renderChannels();
  renderClaims();
  if (!name) return;
  let desc;
  try {
    desc = await api("GET", channelPath(name));
  } catch (error) {
    $("stream-state").textContent = error.message;
    return;
  }
  if (state.current !== name) return;
  $("channel-purpose").textContent = desc.purpose || "";
  const start = Math.max(0, desc.head - BACKLOG);
  if (start > 0) {
    $("log-earlier").hidden = false;
    $("log-earlier").textContent = `${start} earlier messages are not shown.`;
  }
  // The backlog in read pages (a few requests), then the live tail from where they end.
  let cursor = start;
  try {
    for (;;) {
      const page = await api("POST", channelPath(name, "read"), { cursor, limit: 500 });
      if (state.current !== name) return;
      page.messages.forEach((m, i) => appendMessage(m, cursor + i + 1));
      cursor = page.cursor;
      if (page.messages.length === 0) break;
    }
  } catch (_) {
    /* the tail picks up from the last page read */
  }
  if (state.current !== name) return;
  state.tail = new Tail(name, cursor, { onMessage: appendMessage, onState: streamState }).start();
  refreshClaims();
}

const STATES = { live: "live", reconnecting: "reconnecting…", unauthorized: "a token is needed", gone: "channel not found" };

function streamState(s) {
  const node = $("stream-state");
  node.textContent = STATES[s] || s;
  node.dataset.state = s;
}

// Messages are drawn in batches: a backlog of hundreds costs one layout, not one each.
let pending = [];

function flushLog() {
  const batch = pending;
  pending = [];
  const log = $("log");
  const nearBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 80;
  const fragment = document.createDocumentFragment();
  for (const [m, cursor] of batch) fragment.appendChild(messageItem(m, cursor));
  log.appendChild(fragment);
  if (nearBottom) log.scrollTop = log.scrollHeight;
}

function appendMessage(m, cursor) {
  if (pending.length === 0) setTimeout(flushLog, 0);
  pending.push([m, cursor]);
  if (m.type === "claim") {
    if (m.status === "resolved") {
      state.resolved.push({ target: m.target, agent_id: m.agent_id, owner: m.owner, ts: m.ts });
    }
    scheduleClaims();
  }
  const entry = state.channels.get(state.current);
  if (entry) {
    const t = tsMillis(m.ts);
    if (Number.isFinite(t) && cursor > entry.seenHead) {
      entry.times.push(t);
      entry.last = t;
      entry.seenHead = cursor;
      entry.desc.head = Math.max(entry.desc.head, cursor);
      scheduleChannels();
    }
  }
}

let channelsTimer = null;

function scheduleChannels() {
  // The backlog arrives as a burst: redraw the list once after it.
  if (channelsTimer === null) channelsTimer = setTimeout(() => { channelsTimer = null; renderChannels(); }, 200);
}

// -- claims --------------------------------------------------------------------

let claimsTimer = null;

function scheduleClaims() {
  // A burst of claim messages (the backlog) costs one fetch.
  if (claimsTimer === null) claimsTimer = setTimeout(() => { claimsTimer = null; refreshClaims(); }, 50);
}

async function refreshClaims() {
  const name = state.current;
  if (!name) return;
  try {
    const data = await api("GET", channelPath(name, "claims"));
    if (state.current !== name) return;
    state.claims = data.claims;
  } catch (_) {
    return;
  }
  renderClaims();
}

function renderClaims() {
  const live = $("claims-live");
  clear(live);
  const now = Date.now();
  for (const c of state.claims) {
    const left = c.expires_at ? Date.parse(c.expires_at) - now : null;
    live.appendChild(
      h(
        "li",
        { class: "claim", "data-target": c.target },
        h("span", { class: "target", text: c.target }),
        " held by ",
        who(c.holder.agent_id, c.holder.owner),
        " ",
        h("span", { class: "lease", "data-expires": c.expires_at || null, text: left === null ? "no lease" : countdown(left) }),
      ),
    );
  }
  if (!state.claims.length) live.appendChild(h("li", { class: "muted", text: state.current ? "No live claims." : "Open a channel." }));
  const resolved = $("claims-resolved");
  clear(resolved);
  for (const r of state.resolved.slice(-RESOLVED_SHOWN).reverse()) {
    resolved.appendChild(h("li", { class: "claim" }, h("span", { class: "target", text: r.target }), " by ", who(r.agent_id, r.owner), " ", h("span", { class: "muted", text: ago(tsMillis(r.ts), now) })));
  }
  if (!state.resolved.length) resolved.appendChild(h("li", { class: "muted", text: "None yet." }));
  const chart = $("claims-chart");
  clear(chart);
  if (state.current) chart.appendChild(claimBars(state.claims.length, state.resolved.length));
}

function tickLeases() {
  let lapsed = false;
  for (const node of document.querySelectorAll(".lease[data-expires]")) {
    const left = Date.parse(node.dataset.expires) - Date.now();
    node.textContent = countdown(left);
    if (left <= 0) lapsed = true;
  }
  if (lapsed) scheduleClaims();
}

// -- presence and sessions ----------------------------------------------------------

async function refreshPeers() {
  let data;
  try {
    data = await api("GET", "/v1/peers");
  } catch (_) {
    return;
  }
  const list = $("peers");
  clear(list);
  const now = Date.now();
  for (const p of data.peers) {
    list.appendChild(h("li", { class: "peer" }, who(p.agent_id, p.owner), " ", h("span", { class: "presence presence-" + p.status, text: p.status }), " ", h("span", { class: "muted", text: "seen " + ago(Date.parse(p.last_seen), now) })));
  }
  if (!data.peers.length) list.appendChild(h("li", { class: "muted", text: "Nobody has written yet." }));
}

async function refreshSessions() {
  if (!state.identity) return;
  try {
    renderSessions((await api("GET", "/v1/sessions")).sessions);
  } catch (_) {
    /* keep the last picture */
  }
}

function renderSessions(sessions) {
  const list = $("sessions");
  clear(list);
  for (const s of sessions) {
    const subs = Object.entries(s.subscriptions).map(([c, cursor]) => `#${c} @${cursor}`).join(", ");
    list.appendChild(
      h(
        "li",
        { class: "session" },
        h("span", { class: "sid", title: s.sessionId, text: "…" + s.sessionId.slice(-8) }),
        ` ${s.handler} · ${s.turns} turn${s.turns === 1 ? "" : "s"} · ${s.status}`,
        h("br"),
        h("span", { class: "muted", text: (subs || "no subscriptions") + " · last turn " + ago(tsMillis(s.updated_ts), Date.now()) }),
      ),
    );
  }
  if (!sessions.length) list.appendChild(h("li", { class: "muted", text: "No open sessions." }));
}

// -- posting a steer or a note ---------------------------------------------------------

function kind() {
  return document.querySelector('input[name="kind"]:checked').value;
}

function relabel() {
  const k = kind();
  $("steer-label").textContent = k === "steer" ? "Steer" : "Note";
  $("steer-send").textContent = k === "steer" ? "Send steer" : "Send note";
}

async function postSteer(event) {
  event.preventDefault();
  const body = $("steer-body").value;
  if (!body.trim() || !state.current) return;
  const message = { type: kind(), body, msg_id: ulid() };
  const to = $("steer-to").value.split(",").map((s) => s.trim()).filter(Boolean);
  if (to.length) message.to = to;
  const button = $("steer-send");
  button.disabled = true;
  try {
    const result = await api("POST", channelPath(state.current, "append"), message);
    $("steer-body").value = "";
    $("steer-result").textContent = `Posted as #${result.cursor}.`;
  } catch (error) {
    $("steer-result").textContent = "Not posted: " + error.message;
  } finally {
    button.disabled = false;
  }
}

// -- wiring ------------------------------------------------------------------------------

function showGate() {
  if ($("gate").hidden) {
    state.channels.clear(); // drop what was shown, and stop the tail
    openChannel(null);
  }
  $("gate").hidden = false;
  $("app").hidden = true;
}

function showApp() {
  $("gate").hidden = true;
  $("app").hidden = false;
}

function routeFromHash() {
  const match = /^#\/c\/(.+)$/.exec(location.hash);
  const name = match ? decodeURIComponent(match[1]) : null;
  if (name !== state.current) openChannel(name);
}

function every(ms, fn) {
  setInterval(fn, ms);
}

async function main() {
  $("token-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const token = $("token-input").value.trim();
    $("token-input").value = "";
    if (!token || !(await signIn(token))) return;
    renderWho();
    await refreshChannels();
    if (state.current) openChannel(state.current);
    else routeFromHash();
  });
  $("sign-out").addEventListener("click", () => {
    auth.clear();
    state.identity = null;
    renderWho();
    refreshChannels();
  });
  $("steer-form").addEventListener("submit", postSteer);
  for (const radio of document.querySelectorAll('input[name="kind"]')) radio.addEventListener("change", relabel);
  window.addEventListener("hashchange", routeFromHash);

  if (auth.token) await signIn(auth.token);
  renderWho();
  renderClaims();
  await refreshChannels();
  if (!$("app").hidden) routeFromHash();
  refreshPeers();
  every(LIST_EVERY_MS, refreshChannels);
  every(PEERS_EVERY_MS, refreshPeers);
  every(SESSIONS_EVERY_MS, refreshSessions);
  every(CLAIMS_EVERY_MS, refreshClaims);
  every(1000, tickLeases);
}

main();
