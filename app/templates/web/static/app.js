/* Taskbench dashboard: live timeline and scenario graph. No framework, no CDN.
   Streams use fetch() on the SSE endpoint so every event type arrives (EventSource only
   dispatches named events one listens for) and the token travels in a header, not the URL. */
"use strict";

const ENDED = new Set(["completed", "failed", "cancelled"]);

function el(tag, attrs, text) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;  // never innerHTML: events are untrusted
  return node;
}

async function freshToken(holder) {
  const resp = await fetch("/session/token", {credentials: "same-origin"});
  if (!resp.ok) { window.location = "/login"; return; }
  holder.dataset.token = (await resp.json()).access_token;
}

async function api(holder, path) {
  let resp = await fetch(path, {headers: {Authorization: "Bearer " + holder.dataset.token}});
  if (resp.status === 401) {
    await freshToken(holder);
    resp = await fetch(path, {headers: {Authorization: "Bearer " + holder.dataset.token}});
  }
  return resp.ok ? resp.json() : null;
}

/* A JSON request to the API: {status, data} (data: the parsed body, or null). */
async function apiSend(holder, method, path, body) {
  const send = () => fetch(path, {method, headers: {
    Authorization: "Bearer " + holder.dataset.token, "Content-Type": "application/json"},
    body: body === undefined ? undefined : JSON.stringify(body)});
  let resp = await send();
  if (resp.status === 401) { await freshToken(holder); resp = await send(); }
  let data = null;
  try { data = await resp.json(); } catch (err) { /* no JSON body */ }
  return {status: resp.status, data};
}

/* Follow /api/v1/tasks/{id}/events as SSE from `after`, calling onEvent once per event. */
async function follow(holder, after, onEvent, onState) {
  let last = after;
  for (;;) {
    try {
      const resp = await fetch(`/api/v1/tasks/${holder.dataset.task}/events?after=${last}`, {
        headers: {Accept: "text/event-stream", Authorization: "Bearer " + holder.dataset.token}});
      if (resp.status === 401) { await freshToken(holder); continue; }
      if (!resp.ok) { onState("error " + resp.status); return; }
      onState("live");
      const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const {value, done} = await reader.read();
        if (done) break;
        buffer += value;
        let cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          const frame = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          const data = frame.split("\n").filter(l => l.startsWith("data: ")).map(l => l.slice(6));
          const kind = (frame.match(/^event: (.*)$/m) || [])[1];
          if (!data.length || kind === "overflow") continue;
          const event = JSON.parse(data.join("\n"));
          if (event.seq <= last) continue;
          last = event.seq;
          onEvent(event);
        }
      }
    } catch (err) { /* network blip: reconnect below from the last seq seen */ }
    onState("reconnecting…");
    await new Promise(r => setTimeout(r, 1000));
  }
}

function eventText(e) {
  const d = e.data || {};
  const text = d.summary || d.status || d.phase || d.tool || d.content || d.scene || "";
  return String(text).slice(0, 200);
}

/* A tool call's unified diff (data.diff of an edit), one span per line for colour. */
function diffBlock(diff) {
  const pre = el("pre", {class: "diff"});
  for (const line of String(diff).replace(/\n$/, "").split("\n")) {
    let cls = "d-ctx";
    if (line.startsWith("+") && !line.startsWith("+++")) cls = "d-add";
    else if (line.startsWith("-") && !line.startsWith("---")) cls = "d-del";
    else if (line.startsWith("@@")) cls = "d-hunk";
    pre.append(el("span", {class: cls}, line), "\n");
  }
  return pre;
}

function taskPage(holder) {
  const timeline = document.getElementById("timeline");
  const status = document.getElementById("task-status");
  const live = document.getElementById("live");
  const refreshFiles = async () => {
    const files = await api(holder, `/api/v1/tasks/${holder.dataset.task}/artifacts`);
    const list = document.getElementById("files");
    if (!files || !files.length) return;
    list.replaceChildren(...files.map(f => {
      const li = el("li");
      li.append(el("a", {href: `/tasks/${holder.dataset.task}/files/${f.path}`}, f.path));
      return li;
    }));
  };
  follow(holder, Number(holder.dataset.lastSeq || 0), e => {
    const li = el("li", {"data-seq": e.seq, class: "ev ev-" + e.type});
    li.append(el("b", {}, String(e.seq)), " ", el("span", {class: "type"}, e.type), " ",
              el("span", {class: "text"}, eventText(e)));
    const diff = e.type === "tool_call" && e.data && e.data.data && e.data.data.diff;
    if (diff) li.append(diffBlock(diff));
    timeline.append(li);
    if (e.type === "status" && e.data.status) {
      status.textContent = e.data.status;
      status.className = "status s-" + e.data.status;
      if (ENDED.has(e.data.status)) {
        const cancel = document.getElementById("cancel-form");
        if (cancel) cancel.remove();
        refreshFiles();
      }
    }
  }, state => { live.textContent = state; });
}

/* Scenario page: the social graph (graph.js) redrawn as interactions arrive. */
const signedDelta = v => (Number(v) >= 0 ? "+" : "") + Number(v).toFixed(2);

/* One transcript entry: narration, a participant's message, or a move with the ties it moved. */
function transcriptItem(x) {
  const li = el("li", {class: "t-" + x.type, "data-seq": x.seq});
  if (x.type === "user_message") {
    const note = x.undelivered ? ` (not delivered: ${x.undelivered})` : "";
    li.textContent = `[turn ${x.turn}] You (user) → ${x.target || "everyone"}${note}: ${x.content}`;
    if (x.undelivered) li.classList.add("undelivered");
    return li;
  }
  li.textContent = `[turn ${x.turn}] ${x.actor || x.type}${x.target ? " → " + x.target : ""}: ${x.content || x.scene || ""}`;
  if (x.actor) li.dataset.actor = x.actor;
  if (x.target) li.dataset.target = x.target;
  for (const t of x.ties || []) {
    const d = t.delta || {};
    li.append(" ", el("span", {class: "ties", "data-with": t.with},
      `tie with ${t.with}: strength ${Number(t.strength).toFixed(2)} (${signedDelta(d.strength || 0)}), ` +
      `trust ${Number(t.trust).toFixed(2)} (${signedDelta(d.trust || 0)})`));
  }
  return li;
}

/* The participant's form: POST /api/v1/scenarios/runs/{id}/messages; messages not yet taken by
   a turn are listed until the run takes them. */
function participant(holder, base) {
  const form = document.getElementById("speak");
  if (!form) return async () => {};
  const said = document.getElementById("speak-status");
  const waiting = document.getElementById("waiting-messages");
  const refresh = async () => {
    const messages = await api(holder, `/api/v1/tasks/${holder.dataset.task}/messages`);
    waiting.replaceChildren(...(messages || []).filter(m => !m.delivered_at).map(m =>
      el("li", {class: "muted"}, `waiting for the next turn: to ${m.target || "everyone"}: ${m.content}`)));
  };
  form.addEventListener("submit", async ev => {
    ev.preventDefault();
    const body = {to: form.to.value, content: form.content.value};
    const {status, data} = await apiSend(holder, "POST", base + "/messages", body);
    if (status === 201) {
      said.textContent = `Said to ${body.to === "all" ? "everyone" : body.to}; the answer comes at the next turn.`;
      form.content.value = "";
    } else {
      const detail = data && data.detail;
      said.textContent = Array.isArray(detail) ? detail.map(d => (d.loc || []).join(".") + ": " + d.msg).join("; ")
                                               : String(detail || "error " + status);
    }
    refresh();
  });
  refresh();
  return refresh;
}

function scenarioPage(holder) {
  const svg = document.getElementById("graph");
  const slider = document.getElementById("turn");
  const label = document.getElementById("turn-label");
  const transcript = document.getElementById("transcript");
  const base = `/api/v1/scenarios/runs/${holder.dataset.task}`;
  const inbox = participant(holder, base);
  let latest = true, pending = null;
  const load = async () => {
    const turn = latest ? "" : `?turn=${slider.value}`;
    const graph = await api(holder, base + "/graph" + turn);
    if (graph) {
      drawGraph(svg, graph);
      if (latest) { slider.max = graph.turn || 0; slider.value = graph.turn || 0; }
      label.textContent = latest ? `latest (turn ${graph.turn})` : `turn ${slider.value}`;
    }
    const script = await api(holder, base + "/transcript");
    if (script) transcript.replaceChildren(...(script.entries || []).map(transcriptItem));
    await inbox();
  };
  slider.addEventListener("input", () => { latest = Number(slider.value) >= Number(slider.max); load(); });
  load();
  follow(holder, 0, e => {
    if (e.type === "status") {
      document.getElementById("task-status").textContent = e.data.status;
      if (ENDED.has(e.data.status)) {
        const speak = document.getElementById("participant");
        if (speak) speak.remove();
      }
    }
    if (!["interaction", "relationship", "graph", "narration", "turn", "status", "user_message",
          "message"].includes(e.type)) return;
    clearTimeout(pending);
    pending = setTimeout(load, 150);  // coalesce a burst of a turn's events into one redraw
  }, () => {});
}

document.addEventListener("DOMContentLoaded", () => {
  const task = document.getElementById("task");
  if (task) taskPage(task);
  const scenario = document.getElementById("scenario");
  if (scenario) scenarioPage(scenario);
});
