/* Director: compose a scenario cast from an ecosystem, validated live by the API
   (POST /api/v1/scenarios/runs/validate: each problem shown as the API names it, beside its
   field), start it, pause and resume it, fork it from a turn, run a batch of seeds and compare
   their outcomes (GET /api/v1/scenarios/runs/{id}/outcomes). */
"use strict";

const PAUSABLE = new Set(["pending", "assigned", "design", "build", "test", "review"]);
const FORKABLE_KEYS = ["title", "setting", "mood", "objectives", "turns", "turn_order"];

function composed(form, ecosystem) {
  /* The POST /scenarios/runs body the form describes, or {error} when "More fields" is not a
     JSON object (said before anything is sent). */
  let more;
  try { more = JSON.parse(form.more.value || "{}"); } catch (err) { return {error: "not valid JSON: " + err.message}; }
  if (!more || typeof more !== "object" || Array.isArray(more)) return {error: "must be a JSON object {…}"};
  const def = {...more, name: form.name.value.trim(), title: form.title.value.trim(),
               setting: form.setting.value.trim(), turn_order: form.turn_order.value};
  if (form.mood.value.trim()) def.mood = form.mood.value.trim();
  const objectives = form.objectives.value.split("\n").map(s => s.trim()).filter(Boolean);
  if (objectives.length) def.objectives = objectives;
  const turns = form.turns.value.trim();
  if (turns !== "") def.turns = /^-?\d+$/.test(turns) ? Number(turns) : turns;
  def.narrator = {...(more.narrator || {}), enabled: form.narrator.checked};
  def.analyst = {...(more.analyst || {}), enabled: form.analyst.checked};
  def.cast = [...form.querySelectorAll("input[name=cast]:checked")].map(box => {
    const role = form.querySelector(`input[name=role][data-for="${CSS.escape(box.value)}"]`).value.trim();
    return role ? {character: box.value, role} : {character: box.value};
  });
  const body = {definition: def, ecosystem: Number(ecosystem)};
  if (form.seed.value.trim() !== "") body.seed = Number(form.seed.value);
  return {body};
}

function fill(form, definition, storedCast) {
  /* Put a definition into the form: cast members stored in the ecosystem become ticked cast
     rows; whatever the form has no field for goes to "More fields". */
  const def = {...definition};
  for (const key of ["name", "title", "setting", "mood", "turn_order"]) {
    if (def[key] !== undefined) form[key].value = def[key];
    delete def[key];
  }
  form.turns.value = def.turns ?? "";
  form.objectives.value = (def.objectives || []).join("\n");
  form.narrator.checked = !def.narrator || def.narrator.enabled !== false;
  form.analyst.checked = !def.analyst || def.analyst.enabled !== false;
  delete def.turns; delete def.objectives;
  for (const key of ["narrator", "analyst"]) {
    if (def[key]) { delete def[key].enabled; if (!Object.keys(def[key]).length) delete def[key]; }
  }
  const cast = new Map((def.cast || []).map(c => [c.character, c.role || ""]));
  const inline = [];
  for (const c of def.characters || []) {
    if (storedCast && c.name in storedCast) cast.set(c.name, c.role || ""); else inline.push(c);
  }
  delete def.cast;
  if (inline.length) def.characters = inline; else delete def.characters;
  form.querySelectorAll("input[name=cast]").forEach(box => {
    box.checked = cast.has(box.value);
    form.querySelector(`input[name=role][data-for="${CSS.escape(box.value)}"]`).value = cast.get(box.value) || "";
  });
  form.more.value = JSON.stringify(def, null, 1);
}

function fieldFor(form, loc, castNames) {
  /* The form element a problem at `loc` belongs to: the one whose data-loc is the longest
     prefix of it; a cast entry's problem goes to that character's row. */
  const key = loc.join(".");
  if (loc[1] === "definition" && loc[2] === "cast" && Number.isInteger(loc[3]) && castNames[loc[3]]) {
    return form.querySelector(`.cast-row[data-character="${CSS.escape(castNames[loc[3]])}"]`);
  }
  const all = [...form.querySelectorAll("[data-loc]")];
  let best = null, size = -1;
  for (const node of all) {
    for (const candidate of [node.dataset.loc, node.dataset.also]) {
      if (candidate && (key === candidate || key.startsWith(candidate + ".")) && candidate.length > size) {
        best = node; size = candidate.length;
      }
    }
  }
  if (best) return best;
  return loc[1] === "definition" ? form.more : null;
}

function showProblems(form, list, problems, castNames) {
  form.querySelectorAll(".problem").forEach(n => n.remove());
  form.querySelectorAll(".invalid").forEach(n => n.classList.remove("invalid"));
  list.replaceChildren(...problems.map(p => {
    const where = (p.loc || []).join(".");
    const li = el("li", {"data-loc": where});
    li.append(el("code", {}, where || "body"), ": " + p.msg);
    const field = fieldFor(form, p.loc || [], castNames);
    if (field) {
      field.classList.add("invalid");
      const note = el("small", {class: "problem", "data-loc": where}, p.msg);
      (field.closest("label") || field).append(note);
    }
    return li;
  }));
}

function directorPage(holder) {
  const form = document.getElementById("compose");
  const list = document.getElementById("problems");
  const validity = document.getElementById("validity");
  const start = document.getElementById("start");
  let asked = 0, timer = null, baseline = null;

  const check = async () => {
    const mine = ++asked;
    const made = composed(form, holder.dataset.ecosystem);
    const castNames = made.body ? made.body.definition.cast.map(c => c.character) : [];
    if (made.error) {
      showProblems(form, list, [{loc: ["more"], msg: made.error}], castNames);
      validity.textContent = "Not valid yet."; start.disabled = true; return;
    }
    const {status, data} = await apiSend(holder, "POST", "/api/v1/scenarios/runs/validate", made.body);
    if (mine !== asked) return;  // a newer edit was checked meanwhile
    const problems = status === 200 ? data.problems : (data && Array.isArray(data.detail) ? data.detail
      : [{loc: [], msg: (data && data.detail) || "error " + status}]);
    showProblems(form, list, problems, castNames);
    const ok = status === 200 && data.valid;
    validity.textContent = ok ? `Valid: ${data.turns} turns, cast ${data.characters.join(", ")}, complexity ${data.complexity}.`
                              : `Not valid yet: ${problems.length} problem${problems.length === 1 ? "" : "s"}.`;
    validity.className = ok ? "ok" : "problems";
    start.disabled = !ok;
  };
  const later = () => { clearTimeout(timer); timer = setTimeout(check, 250); };
  form.addEventListener("input", later);
  form.addEventListener("change", later);
  form.addEventListener("submit", ev => ev.preventDefault());

  start.addEventListener("click", async () => {
    const made = composed(form, holder.dataset.ecosystem);
    if (!made.body) return;
    start.disabled = true;
    const {status, data} = await apiSend(holder, "POST", "/api/v1/scenarios/runs", made.body);
    if (status !== 201) {
      showProblems(form, list, Array.isArray(data && data.detail) ? data.detail : [{loc: [], msg: String(data && data.detail)}],
                   made.body.definition.cast.map(c => c.character));
      start.disabled = false;
      return;
    }
    baseline = made.body.definition;
    follow_run(data.task_id);
    start.disabled = false;
  });

  /* -- the run panel ------------------------------------------------------------------- */
  const panel = document.getElementById("run-panel");
  const message = document.getElementById("run-message");
  let run = null, poll = null, batchAsked = false;
  const say = text => { message.textContent = text; };
  const follow_run = taskId => {
    run = taskId;
    const url = new URL(window.location.href);
    url.searchParams.set("run", taskId); url.searchParams.delete("scenario");
    window.history.replaceState(null, "", url);
    const link = document.getElementById("run-link");
    link.textContent = "#" + taskId; link.href = `/scenarios/runs/${taskId}`;
    panel.hidden = false;
    document.getElementById("forks").replaceChildren();
    refresh();
  };
  const refresh = async () => {
    clearTimeout(poll);
    if (run === null) return;
    const task = await api(holder, `/api/v1/tasks/${run}`);
    let busy = true;
    if (task) {
      const status = document.getElementById("run-status");
      status.textContent = task.status; status.className = "status s-" + task.status;
      document.getElementById("pause").disabled = !PAUSABLE.has(task.status);
      document.getElementById("resume").disabled = task.status !== "paused";
      const script = await api(holder, `/api/v1/scenarios/runs/${run}/transcript`);
      if (script) document.getElementById("run-turn").textContent = String(script.turns);
      const def = ((task.spec || {}).inputs || {}).definition || {};
      document.getElementById("run-turns").textContent = String(def.turns ?? "?");
      const unfinished = task.children.length || batchAsked ? await outcomes() : 0;
      busy = !ENDED.has(task.status) || unfinished > 0;
    }
    poll = setTimeout(refresh, busy ? 1500 : 6000);  // an ended run and batch: seldom
  };
  const outcomes = async () => {
    const out = await api(holder, `/api/v1/scenarios/runs/${run}/outcomes`);
    if (!out) return 0;
    if (out.runs.total < 2) return out.runs.unfinished;
    const table = document.getElementById("outcomes");
    const objectives = out.objectives.map(o => o.objective);
    const head = table.querySelector("thead tr");
    head.querySelectorAll(".objective").forEach(n => n.remove());
    objectives.forEach(o => head.append(el("th", {class: "objective"}, o)));
    table.querySelector("tbody").replaceChildren(...out.per_run.map(r => {
      const tr = el("tr", {"data-run": r.task_id});
      const name = el("td");
      name.append(el("a", {href: `/scenarios/runs/${r.task_id}`}, "#" + r.task_id));
      tr.append(name, ...[r.seed, r.status, r.turns, r.interactions, r.conflicts, r.collaborations]
        .map(v => el("td", {}, v === null || v === undefined ? "—" : String(v))));
      objectives.forEach(o => tr.append(el("td", {class: "objective"},
        o in r.objectives_met ? (r.objectives_met[o] ? "met" : "not met") : "—")));
      return tr;
    }));
    table.hidden = false;
    const runs = out.runs;
    document.getElementById("outcome-summary").textContent =
      `${runs.completed} of ${runs.total} runs completed, ${runs.failed} failed, ${runs.unfinished} unfinished; ` +
      `interactions per run: mean ${out.interactions.mean ?? "—"} (min ${out.interactions.min ?? "—"}, max ${out.interactions.max ?? "—"}).`;
    return runs.unfinished;
  };
  const act = async (label, method, path, body) => {
    const {status, data} = await apiSend(holder, method, path, body);
    const detail = data && data.detail;
    say(status < 300 ? label : `${label} refused (${status}): ${Array.isArray(detail)
      ? detail.map(d => (d.loc || []).join(".") + ": " + d.msg).join("; ") : detail}`);
    refresh();
    return status < 300 ? data : null;
  };
  document.getElementById("pause").addEventListener("click", () =>
    act("Paused.", "POST", `/api/v1/tasks/${run}/pause`));
  document.getElementById("resume").addEventListener("click", () =>
    act("Resumed.", "POST", `/api/v1/tasks/${run}/resume`));
  document.getElementById("fork").addEventListener("click", async () => {
    const body = {from_turn: Number(document.getElementById("fork-turn").value || 0)};
    const made = composed(form, holder.dataset.ecosystem);
    if (document.getElementById("fork-changes").checked && made.body && baseline) {
      const overrides = {};
      for (const key of FORKABLE_KEYS) {
        if (JSON.stringify(made.body.definition[key]) !== JSON.stringify(baseline[key])) overrides[key] = made.body.definition[key];
      }
      body.overrides = overrides;
    }
    const fork = await act(`Forked from turn ${body.from_turn}.`, "POST", `/api/v1/scenarios/runs/${run}/fork`, body);
    if (fork) {
      const li = el("li", {"data-run": fork.task_id});
      li.append(el("a", {href: `/scenarios/runs/${fork.task_id}`}, `#${fork.task_id}`),
                ` from turn ${body.from_turn} · `,
                el("a", {href: `?run=${fork.task_id}`}, "direct it"));
      document.getElementById("forks").append(li);
    }
  });
  document.getElementById("batch").addEventListener("click", async () => {
    const n = Number(document.getElementById("batch-n").value || 1);
    batchAsked = true;
    await act(`Batch of ${n} seeds started.`, "POST", `/api/v1/scenarios/runs/${run}/batch`, {n});
  });

  /* -- what the page opens with ------------------------------------------------------------ */
  const open = async () => {
    const templates = await api(holder, "/api/v1/scenarios");
    const select = document.getElementById("load-template");
    for (const t of (templates && templates.data) || []) select.append(el("option", {value: t.name}, `${t.name} — ${t.title || ""}`));
    select.addEventListener("change", async () => {
      if (!select.value) return;
      const found = (templates.data || []).find(t => t.name === select.value);
      if (found) { fill(form, found.definition, null); check(); }
    });
    if (holder.dataset.run) {
      const task = await api(holder, `/api/v1/tasks/${holder.dataset.run}`);
      const inputs = (task && task.spec && task.spec.inputs) || {};
      if (inputs.definition) {
        const def = {...inputs.definition};
        if (inputs.ecosystem) delete def.relationships;  // the ecosystem's ties of that time
        fill(form, def, inputs.stored_cast || {});
        baseline = composed(form, holder.dataset.ecosystem).body?.definition || null;
        follow_run(Number(holder.dataset.run));
      }
    } else if (holder.dataset.scenario) {
      select.value = holder.dataset.scenario;
      select.dispatchEvent(new Event("change"));
    }
    check();
  };
  open();
}

document.addEventListener("DOMContentLoaded", () => {
  const holder = document.getElementById("director");
  if (holder) directorPage(holder);
});
