// Small inline SVG charts drawn with DOM calls (no library, no innerHTML).
// Each chart carries a text alternative (role="img" + aria-label + <title>).

const NS = "http://www.w3.org/2000/svg";

function el(name, attrs) {
  const node = document.createElementNS(NS, name);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, String(value));
  return node;
}

function titled(svg, label) {
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", label);
  const title = el("title");
  title.textContent = label;
  svg.appendChild(title);
  return svg;
}

export const BIN_MINUTES = 5;
export const BINS = 12;

// Counts of `times` (ms) in BINS bins of BIN_MINUTES, oldest first, ending now.
export function binCounts(times, now) {
  const width = BIN_MINUTES * 60 * 1000;
  const counts = new Array(BINS).fill(0);
  for (const t of times) {
    const age = now - t;
    if (!(age >= 0) || age >= width * BINS) continue;
    counts[BINS - 1 - Math.floor(age / width)] += 1;
  }
  return counts;
}

// One bar per bin; the label says the total in words.
export function sparkline(counts, label) {
  const w = 96;
  const h = 24;
  const max = Math.max(1, ...counts);
  const barW = w / counts.length;
  const svg = titled(el("svg", { viewBox: `0 0 ${w} ${h}`, width: w, height: h, class: "spark" }), label);
  svg.appendChild(el("line", { x1: 0, y1: h - 0.5, x2: w, y2: h - 0.5, class: "axis" }));
  counts.forEach((count, i) => {
    if (count === 0) return;
    const barH = Math.max(2, (count / max) * (h - 2));
    svg.appendChild(el("rect", { x: i * barW + 1, y: h - barH, width: barW - 2, height: barH, class: "bar" }));
  });
  return svg;
}

// Open vs resolved claims as two labelled horizontal bars.
export function claimBars(open, resolved) {
  const w = 260;
  const rowH = 22;
  const labelW = 70;
  const max = Math.max(1, open, resolved);
  const label = `${open} open, ${resolved} resolved claims`;
  const svg = titled(el("svg", { viewBox: `0 0 ${w} ${rowH * 2 + 4}`, class: "bars" }), label);
  [["open", open, "bar-open"], ["resolved", resolved, "bar-resolved"]].forEach(([name, value, cls], row) => {
    const y = row * (rowH + 4);
    const text = el("text", { x: 0, y: y + rowH * 0.7, class: "bar-label" });
    text.textContent = name;
    svg.appendChild(text);
    const barW = value === 0 ? 0 : Math.max(3, (value / max) * (w - labelW - 36));
    svg.appendChild(el("rect", { x: labelW, y, width: barW, height: rowH, class: cls }));
    const num = el("text", { x: labelW + barW + 6, y: y + rowH * 0.7, class: "bar-label" });
    num.textContent = String(value);
    svg.appendChild(num);
  });
  return svg;
}
