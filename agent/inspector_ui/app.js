// The agent's request inspector: polls /api/requests/http, shows one request, replays it.
// Everything captured is shown with textContent only: a request's bytes are never markup.
"use strict";

const api = "/api/requests/http";
let version = -1;
let selected = null;
let requests = [];

function el(id) { return document.getElementById(id); }

function headerText(headers) {
  return Object.entries(headers).flatMap(([k, vs]) => vs.map(v => `${k}: ${v}`)).join("\n");
}

function bodyText(body) {
  if (body.kind === "json") return body.pretty;
  if (body.kind === "form") return body.form.map(([k, v]) => `${k} = ${v}`).join("\n");
  if (body.kind === "binary") return body.hex;
  return body.text;
}

function bodyNote(body) {
  const parts = [`${body.size} bytes`, body.kind];
  if (body.content_type) parts.push(body.content_type);
  if (body.decoded_from) parts.push(`decoded from ${body.decoded_from}`);
  if (body.truncated) parts.push(`truncated: first ${body.captured} bytes kept`);
  return parts.join(", ");
}

let shown = null;

async function showDetail(summary) {
  if (shown && shown.id === summary.id && shown.response) return;
  const req = await (await fetch(`${api}/${summary.id}`)).json();
  shown = req;
  el("detail").hidden = false;
  el("detail-title").textContent = `${req.request.method} ${req.request.uri}` +
    (req.replay_of ? ` (replay of ${req.replay_of})` : "");
  el("request-headers").textContent = headerText(req.request.headers);
  el("request-note").textContent = bodyNote(req.request.body);
  el("request-body").textContent = bodyText(req.request.body);
  const resp = req.response;
  el("response-headers").textContent = resp ? `${resp.proto} ${resp.status}\n` + headerText(resp.headers) : "(no response yet)";
  el("response-note").textContent = resp ? bodyNote(resp.body) : "";
  el("response-body").textContent = resp ? bodyText(resp.body) : "";
}

function render() {
  const tbody = el("list").tBodies[0];
  tbody.replaceChildren();
  for (const req of requests) {
    const row = tbody.insertRow();
    row.dataset.id = req.id;
    if (req.id === selected) row.classList.add("selected");
    const status = req.response ? req.response.status_code : "";
    const cells = [new Date(req.start).toLocaleTimeString(), req.request.method,
      req.request.uri, String(status), req.response ? `${(req.duration / 1e6).toFixed(1)} ms` : ""];
    cells.forEach((text, i) => {
      const cell = row.insertCell();
      cell.textContent = text;
      if (i === 2) cell.className = "path";
      if (i === 3 && status) cell.className = `s${String(status)[0]}`;
    });
    row.addEventListener("click", () => { selected = req.id; render(); showDetail(req); });
  }
  el("count").textContent = `${requests.length} requests`;
  el("empty").hidden = requests.length > 0;
  const current = requests.find(r => r.id === selected);
  if (current) showDetail(current);
}

async function poll() {
  try {
    const answer = await fetch(`${api}?limit=200`);
    const doc = await answer.json();
    if (doc.version !== version) {
      version = doc.version;
      requests = doc.requests;
      render();
    }
  } catch (err) {
    el("count").textContent = "agent not answering";
  }
}

async function replay(edits) {
  el("replay-status").textContent = "replaying…";
  const answer = await fetch(api, {
    method: "POST", headers: {"Content-Type": "application/json"},
    body: JSON.stringify(Object.assign({id: selected}, edits)),
  });
  if (answer.status === 204) {
    selected = answer.headers.get("Location").split("/").pop();
    el("replay-status").textContent = "replayed";
  } else {
    el("replay-status").textContent = `replay failed: ${(await answer.json()).msg}`;
  }
  await poll();
}

function openEditor() {
  const req = shown;
  if (!req || req.id !== selected) return;
  el("editor").hidden = false;
  el("edit-method").value = req.request.method;
  el("edit-path").value = req.request.uri;
  el("edit-headers").value = headerText(req.request.headers);
  el("edit-body").value = req.request.body.text || "";
}

function sendEdit(event) {
  event.preventDefault();
  const headers = el("edit-headers").value.split("\n").filter(l => l.includes(":"))
    .map(l => [l.slice(0, l.indexOf(":")).trim(), l.slice(l.indexOf(":") + 1).trim()]);
  replay({method: el("edit-method").value, path: el("edit-path").value,
          headers, body: el("edit-body").value});
  el("editor").hidden = true;
}

document.addEventListener("DOMContentLoaded", () => {
  el("replay").addEventListener("click", () => replay({}));
  el("edit").addEventListener("click", openEditor);
  el("editor").addEventListener("submit", sendEdit);
  el("clear").addEventListener("click", async () => {
    await fetch(api, {method: "DELETE"});
    selected = null;
    el("detail").hidden = true;
    await poll();
  });
  poll();
  setInterval(poll, 1000);
});
