/* Living mode of one ecosystem (observatory page): GET /api/v1/ecosystems/{id}/living shown as
   its status, today's spending and the round in flight; Pause / Resume / Stop call the API's
   own endpoints, and the set-up form PUTs a daily budget (problems named as the API names them). */
"use strict";

function livingText(s) {
  if (s.status === "off") return "Off: rounds run only when you start a scenario.";
  const budget = [s.budget.turns_per_day ? `${s.turns_today} of ${s.budget.turns_per_day} turns` : "",
                  s.budget.usd_per_day ? `$${Number(s.spent_usd).toFixed(4)} of $${s.budget.usd_per_day}` : ""]
    .filter(Boolean).join(", ");
  const parts = [`${s.status === "on" ? "Living" : "Paused"}: ${s.rounds} round(s) so far, today ${budget}.`];
  if (s.round_in_flight) parts.push(`Round #${s.round_in_flight} is playing.`);
  else if (s.next_round_at) parts.push(`Next round: ${new Date(s.next_round_at).toLocaleString()}.`);
  return parts.join(" ");
}

function livingPanel(holder) {
  const box = document.getElementById("living");
  const state = document.getElementById("living-state");
  const stopped = document.getElementById("living-stopped");
  const problems = document.getElementById("living-problems");
  const form = document.getElementById("living-form");
  const base = `/api/v1/ecosystems/${holder.dataset.ecosystem}/living`;
  const show = s => {
    box.dataset.status = s.status;
    state.textContent = livingText(s);
    stopped.textContent = s.stopped || "";
    for (const b of box.querySelectorAll("button[data-show]")) b.hidden = !b.dataset.show.split(" ").includes(s.status);
    form.hidden = s.status !== "off";
  };
  const load = async () => { const s = await api(holder, base); if (s) show(s); };
  const act = async (method, path, body) => {
    const {status, data} = await apiSend(holder, method, base + path, body);
    problems.replaceChildren();
    if (status === 200) { show(data); return; }
    const detail = data && data.detail;
    const list = Array.isArray(detail) ? detail.map(p => `${p.loc.join(".")}: ${p.msg}`) : [String(detail || status)];
    problems.replaceChildren(...list.map(t => el("li", {}, t)));
  };
  box.querySelector("[data-act=pause]").addEventListener("click", () => act("POST", "/pause"));
  box.querySelector("[data-act=resume]").addEventListener("click", () => act("POST", "/resume"));
  box.querySelector("[data-act=stop]").addEventListener("click", () => act("DELETE", ""));
  form.addEventListener("submit", ev => {
    ev.preventDefault();
    const f = new FormData(form), budget = {};
    if (f.get("turns")) budget.turns_per_day = Number(f.get("turns"));
    if (f.get("usd")) budget.usd_per_day = Number(f.get("usd"));
    act("PUT", "", {budget, interval_s: Math.round(Number(f.get("minutes") || 0) * 60)});
  });
  load();
  setInterval(load, 15000);
}

document.addEventListener("DOMContentLoaded", () => {
  const holder = document.getElementById("observatory");
  if (holder && document.getElementById("living")) livingPanel(holder);
});
