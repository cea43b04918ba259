// Burrow console: copy buttons, confirm dialogs and the live tunnel list. Every page works
// without it except for live updates. Text only ever goes in through textContent.
"use strict";

document.addEventListener("click", (event) => {
  const button = event.target.closest("[data-copy]");
  if (!button) return;
  const source = document.getElementById(button.dataset.copy);
  if (!source || !navigator.clipboard) return;
  navigator.clipboard.writeText(source.textContent).then(() => {
    button.textContent = "Copied";
    setTimeout(() => { button.textContent = "Copy"; }, 1500);
  });
});

document.addEventListener("submit", (event) => {
  const message = event.target.dataset.confirm;
  if (message && !window.confirm(message)) event.preventDefault();
});

function since(iso) {
  const started = Date.parse(iso);
  if (Number.isNaN(started)) return "";
  let seconds = Math.max(0, Math.round((Date.now() - started) / 1000));
  const parts = [];
  for (const [unit, size] of [["d", 86400], ["h", 3600], ["m", 60]]) {
    if (seconds >= size) { parts.push(Math.floor(seconds / size) + unit); seconds %= size; }
  }
  if (!parts.length) parts.push(seconds + "s");
  return parts.slice(0, 2).join(" ");
}

function cell(text) {
  const td = document.createElement("td");
  td.textContent = text == null ? "" : String(text);
  return td;
}

function stopForm(table, tunnel) {
  const form = document.createElement("form");
  form.method = "post";
  form.action = "/tunnels/stop";
  form.className = "inline";
  form.dataset.confirm = "Stopping revokes this tunnel's agent token: every tunnel of that token ends and the agent cannot reconnect with it. Stop?";
  for (const [name, value] of [[table.dataset.csrfField, table.dataset.csrf], ["token_id", tunnel.token_id]]) {
    const input = document.createElement("input");
    input.type = "hidden";
    input.name = name;
    input.value = value;
    form.appendChild(input);
  }
  const button = document.createElement("button");
  button.type = "submit";
  button.className = "danger";
  button.textContent = "Stop";
  form.appendChild(button);
  const td = document.createElement("td");
  td.appendChild(form);
  return td;
}

function showTunnels(table, tunnels) {
  const body = table.tBodies[0];
  const rows = tunnels.map((t) => {
    const tr = document.createElement("tr");
    tr.dataset.key = t.key;
    const up = cell(since(t.started_at));
    up.dataset.since = t.started_at;
    for (const td of [cell(t.url), cell(t.protocol), cell(t.edge_id), cell(t.agent_version),
      cell(t.client_addr), cell(t.local_addr), up, stopForm(table, t)]) tr.appendChild(td);
    return tr;
  });
  body.replaceChildren(...rows);
  const empty = document.getElementById("tunnels-empty");
  if (empty) empty.hidden = tunnels.length > 0;
}

const live = document.getElementById("tunnels");
if (live && live.dataset.stream && window.EventSource) {
  const state = document.getElementById("live-state");
  const stream = new EventSource(live.dataset.stream);
  stream.addEventListener("tunnels", (event) => {
    showTunnels(live, JSON.parse(event.data).tunnels);
    if (state) state.textContent = "Live.";
  });
  stream.addEventListener("error", () => { if (state) state.textContent = "Reconnecting…"; });
  setInterval(() => {
    for (const td of live.querySelectorAll("[data-since]")) td.textContent = since(td.dataset.since);
  }, 5000);
}

// The request list's live tail: each newly captured request goes on top of the list.
function requestRow(r) {
  const tr = document.createElement("tr");
  const link = document.createElement("a");
  link.href = "/requests/" + encodeURIComponent(r.id);
  link.textContent = r.url;
  const path = document.createElement("td");
  path.appendChild(link);
  if (r.replay_of) {
    const tag = document.createElement("span");
    tag.className = "tag";
    tag.textContent = "replay";
    path.append(" ", tag);
  }
  const started = new Date(r.started);
  const when = Number.isNaN(started.getTime()) ? "" : started.toISOString().slice(0, 16).replace("T", " ") + " UTC";
  for (const td of [cell(when), cell(r.hostname), cell(r.method), path,
    cell(r.status || r.error || "—"), cell(Math.round(r.duration * 1000) + " ms"), cell(r.visitor)]) tr.appendChild(td);
  return tr;
}

const tail = document.getElementById("requests");
if (tail && tail.dataset.stream && window.EventSource) {
  const state = document.getElementById("tail-state");
  const stream = new EventSource(tail.dataset.stream);
  const seen = new Set();
  stream.addEventListener("open", () => { if (state) state.textContent = "New requests appear at the top as they arrive."; });
  stream.addEventListener("request", (event) => {
    const r = JSON.parse(event.data);
    if (seen.has(r.id) || tail.querySelector('a[href="/requests/' + CSS.escape(encodeURIComponent(r.id)) + '"]')) return;
    seen.add(r.id);
    tail.tBodies[0].prepend(requestRow(r));
    const empty = document.getElementById("requests-empty");
    if (empty) empty.hidden = true;
  });
  stream.addEventListener("error", () => { if (state) state.textContent = "Reconnecting…"; });
}
