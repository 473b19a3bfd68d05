// Shared by the node's and the registry's pages. Every value from the server is written with
// textContent: text a peer or client supplied is never markup.
const $ = (id) => document.getElementById(id);

function cell(text, className, title) {
  const td = document.createElement("td");
  td.textContent = text == null ? "–" : String(text);
  if (className) td.className = className;
  if (title) td.title = title;
  return td;
}

function badge(text, kind) {
  const span = document.createElement("span");
  span.className = "badge " + kind;
  span.textContent = text;
  return span;
}

function badgeCell(text, kind) {
  const td = document.createElement("td");
  td.append(badge(text, kind));
  return td;
}

// Replaces the rows of the table body `id`: one per item (at most `max`), drawn by `row`, or one
// row saying `emptyText`.
function fill(id, items, emptyText, columns, row, max = 500) {
  const rows = items.slice(0, max).map((item) => {
    const tr = document.createElement("tr");
    row(item, tr);
    return tr;
  });
  if (rows.length === 0) {
    const tr = document.createElement("tr");
    const td = cell(emptyText, "empty");
    td.colSpan = columns;
    tr.append(td);
    rows.push(tr);
  }
  $(id).replaceChildren(...rows);
}

function bytes(n) {
  if (n == null) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = n, unit = 0;
  while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit++; }
  return (unit === 0 ? value : value.toFixed(1)) + " " + units[unit];
}

function duration(seconds) {
  if (seconds == null) return "–";
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return s + " s";
  if (s < 3600) return Math.floor(s / 60) + " min " + (s % 60) + " s";
  if (s < 86400) return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
  return Math.floor(s / 86400) + " d " + Math.floor((s % 86400) / 3600) + " h";
}

function ago(ms) {
  return ms ? duration((Date.now() - ms) / 1000) + " ago" : "never";
}

function time(ms) {
  return ms ? new Date(ms).toLocaleString() : "–";
}

function short(id) {
  return id && id.length > 20 ? id.slice(0, 10) + "…" + id.slice(-6) : id;
}

function setLive(text, kind) {
  const live = $("live");
  live.textContent = text;
  live.className = "badge " + kind;
}
