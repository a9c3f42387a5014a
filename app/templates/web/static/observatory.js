/* Observatory of one ecosystem: GET /api/v1/ecosystems/{id}/observatory drawn as the social
   graph (graph.js), stats, mean trust over time and an activity feed; a click on a character
   opens its panel (traits, emotional state, strongest ties, latest memories from
   /api/v1/characters/{id}/memories). Re-read every few seconds while a run is playing. */
"use strict";

const TRAIT_NAMES = ["openness", "conscientiousness", "extraversion", "agreeableness", "neuroticism"];
const signed = v => (Number(v) >= 0 ? "+" : "") + Number(v).toFixed(2);

function statsList(dl, stats) {
  const rows = [["Characters", stats.characters], ["Relationships", stats.relationships],
                ["Interactions", stats.interactions], ["Runs", stats.runs],
                ["Mean trust", stats.mean_trust === null ? "—" : Number(stats.mean_trust).toFixed(2)]];
  dl.replaceChildren(...rows.flatMap(([k, v]) => [el("dt", {}, k),
                                                  el("dd", {"data-stat": k.toLowerCase()}, String(v))]));
}

function feedList(ol, lines) {
  ol.replaceChildren(...lines.map(l => {
    const li = el("li", {"data-run": l.task_id});
    li.append(el("a", {href: `/scenarios/runs/${l.task_id}`}, `#${l.task_id}`), " ", el("span", {}, l.text));
    return li;
  }));
  if (!lines.length) ol.replaceChildren(el("li", {class: "muted"}, "Nothing has happened here yet."));
}

function runsTable(tbody, runs) {
  tbody.replaceChildren(...runs.map(r => {
    const tr = el("tr", {"data-run": r.task_id});
    const name = el("td");
    name.append(el("a", {href: `/scenarios/runs/${r.task_id}`}, `#${r.task_id} ${r.title}`));
    tr.append(name, el("td", {}, r.status), el("td", {}, String(r.turns)),
              el("td", {}, String(r.interactions)));
    return tr;
  }));
}

async function nodePanel(holder, panel, node) {
  const title = el("h2", {}, node.name);
  const parts = [title];
  if (node.persona) parts.push(el("p", {class: "persona"}, node.persona));
  parts.push(el("p", {id: "node-state"}, "Emotional state: " + (node.state || "not known yet")));
  const traits = el("table", {id: "node-traits", class: "traits"});
  for (const t of TRAIT_NAMES) {
    const value = node.traits && node.traits[t] !== undefined ? Number(node.traits[t]) : 0.5;
    const row = el("tr", {"data-trait": t});
    const bar = el("td");
    bar.append(el("meter", {min: "0", max: "1", value: String(value)}));
    row.append(el("th", {}, t), bar, el("td", {}, value.toFixed(2)));
    traits.append(row);
  }
  parts.push(el("h3", {}, "Traits"), traits);
  if ((node.goals || []).length) {
    parts.push(el("h3", {}, "Goals"));
    const goals = el("ul");
    node.goals.forEach(g => goals.append(el("li", {}, g)));
    parts.push(goals);
  }
  parts.push(el("h3", {}, "Strongest ties"));
  const ties = el("ul", {id: "node-ties"});
  for (const t of node.strongest_ties || []) {
    ties.append(el("li", {}, `${t.other}: strength ${signed(t.strength)}, trust ${Number(t.trust).toFixed(2)}`));
  }
  if (!ties.children.length) ties.append(el("li", {class: "muted"}, "No ties yet."));
  parts.push(ties, el("h3", {}, "Latest memories"));
  const memories = el("ul", {id: "node-memories"}, "");
  memories.append(el("li", {class: "muted"}, "loading…"));
  parts.push(memories);
  panel.replaceChildren(...parts);
  panel.dataset.name = node.name;
  if (!node.id) { memories.replaceChildren(el("li", {class: "muted"}, "—")); return; }
  const found = await api(holder, `/api/v1/characters/${node.id}/memories?limit=5`);
  if (panel.dataset.name !== node.name) return;  // another character was clicked meanwhile
  const items = (found && found.data) || [];
  memories.replaceChildren(...items.map(m => {
    const li = el("li", {}, m.content);
    li.append(" ", el("small", {class: "muted"},
      `(importance ${Number(m.importance).toFixed(1)}${m.source_run ? ", run #" + m.source_run : ""})`));
    return li;
  }));
  if (!items.length) memories.replaceChildren(el("li", {class: "muted"}, "No memories yet."));
}

function observatoryPage(holder) {
  const svg = document.getElementById("graph");
  const panel = document.getElementById("node-panel");
  const live = document.getElementById("live");
  let selected = null, timer = null;
  const load = async () => {
    const view = await api(holder, `/api/v1/ecosystems/${holder.dataset.ecosystem}/observatory`);
    if (!view) { live.textContent = "could not load"; return; }
    drawGraph(svg, view.graph, {selected, onNode: node => {
      selected = node.name;
      svg.querySelectorAll("g.node").forEach(g => g.classList.toggle("selected", g.dataset.name === node.name));
      nodePanel(holder, panel, node);
    }});
    statsList(document.getElementById("stats"), view.stats);
    drawTrustChart(document.getElementById("trust-chart"), view.trust_series);
    feedList(document.getElementById("feed"), view.activity.lines);
    runsTable(document.querySelector("#runs tbody"), view.activity.runs);
    const playing = view.activity.runs.some(r => !ENDED.has(r.status));
    live.textContent = view.live_run ? `run #${view.live_run} is playing: live` : playing ? "a run is waiting" : "";
    clearTimeout(timer);
    timer = setTimeout(load, playing ? 2000 : 15000);
  };
  load();
}

document.addEventListener("DOMContentLoaded", () => {
  const holder = document.getElementById("observatory");
  if (holder) observatoryPage(holder);
});
