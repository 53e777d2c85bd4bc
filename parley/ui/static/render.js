// DOM builders for server data. Every server string goes in through
// textContent or an attribute, never as HTML: a body is always text.

import { artifactPath, auth, tsMillis } from "./api.js";

export function h(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    node.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
  }
  return node;
}

export function clear(node) {
  while (node.firstChild) node.removeChild(node.firstChild);
}

export function clock(ts) {
  const ms = typeof ts === "number" ? ts : tsMillis(ts);
  if (!Number.isFinite(ms)) return "";
  return new Date(ms).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

export function ago(ms, now) {
  if (!Number.isFinite(ms)) return "never";
  const s = Math.max(0, Math.round((now - ms) / 1000));
  if (s < 60) return s + "s ago";
  if (s < 3600) return Math.floor(s / 60) + "m ago";
  if (s < 86400) return Math.floor(s / 3600) + "h ago";
  return Math.floor(s / 86400) + "d ago";
}

export function countdown(ms) {
  if (ms <= 0) return "lapsing";
  const s = Math.ceil(ms / 1000);
  const m = Math.floor(s / 60);
  return m > 0 ? `${m}m ${String(s % 60).padStart(2, "0")}s left` : `${s}s left`;
}

export function who(agent, owner) {
  return h("span", { class: "who-tag" }, h("span", { class: "agent", text: agent || "?" }), " ", h("span", { class: "owner", text: "(" + (owner || "?") + ")" }));
}

const COLLAPSE_CHARS = 600;
const COLLAPSE_LINES = 8;

function shortId(id) {
  return typeof id === "string" ? id.slice(-6) : "";
}

function refLink(label, id) {
  return h("a", { class: "ref", href: "#m-" + id, title: id, text: `${label} …${shortId(id)}` });
}

function artifactLink(uri) {
  const path = artifactPath(uri);
  if (!path) return h("span", { class: "artifact", title: uri, text: "artifact: " + uri });
  const sha = path.slice(path.lastIndexOf("/") + 1);
  const link = h("a", { class: "artifact", href: path, download: sha, text: "Download artifact …" + sha.slice(0, 12) });
  link.addEventListener("click", async (event) => {
    if (!auth.token) return; // open reads: the plain link works
    event.preventDefault(); // a token must ride in a header, not the URL
    const response = await fetch(path, { headers: { Authorization: "Bearer " + auth.token }, credentials: "omit" });
    if (!response.ok) return;
    const url = URL.createObjectURL(await response.blob());
    const temp = h("a", { href: url, download: sha });
    document.body.appendChild(temp);
    temp.click();
    temp.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  });
  return link;
}

export function messageItem(m, cursor) {
  const meta = h(
    "div",
    { class: "meta" },
    h("span", { class: "type type-" + (/^[a-z]+$/.test(m.type) ? m.type : "other"), text: m.type }),
    " ",
    who(m.agent_id, m.owner),
  );
  if (Array.isArray(m.to) && m.to.length) meta.append(" ", h("span", { class: "to", text: "→ " + m.to.join(", ") }));
  if (m.target) meta.append(" ", h("span", { class: "target", text: "target: " + m.target }));
  if (m.assignee && m.assignee.agent_id) meta.append(" ", h("span", { class: "to", text: "assigned to " + m.assignee.agent_id }));
  if (m.status) meta.append(" ", h("span", { class: "status status-" + m.status, text: m.status }));
  if (m.thread) meta.append(" ", refLink("thread", m.thread));
  if (m.reply_to) meta.append(" ", refLink("reply to", m.reply_to));
  meta.append(" ", h("time", { class: "ts", title: m.ts, text: clock(m.ts) }), " ", h("span", { class: "cursor", text: "#" + cursor }));

  const body = h("div", { class: "body", text: typeof m.body === "string" ? m.body : "" });
  const item = h("li", { class: "msg", id: m.msg_id ? "m-" + m.msg_id : null, "data-cursor": cursor, "data-msg-id": m.msg_id }, meta, body);
  const text = body.textContent;
  if (text.length > COLLAPSE_CHARS || text.split("\n").length > COLLAPSE_LINES) {
    body.classList.add("collapsed");
    const toggle = h("button", { type: "button", class: "more", "aria-expanded": "false", text: "Show full message" });
    toggle.addEventListener("click", () => {
      const open = body.classList.toggle("collapsed") === false;
      toggle.setAttribute("aria-expanded", String(open));
      toggle.textContent = open ? "Collapse message" : "Show full message";
    });
    item.appendChild(toggle);
  }
  if (m.artifact) item.appendChild(h("div", {}, artifactLink(m.artifact)));
  return item;
}
