/* Taskbench dashboard: the social graph and the trust chart as plain SVG (no library).

   drawGraph(svg, graph, {onNode, selected})   characters on a circle, ties as lines (green:
       strength > 0, red dashed: < 0; width ∝ |strength|, opacity ∝ trust), circle size ∝
       centrality, colour by community; labels placed outside the circle and moved apart until
       none overlaps another label or a character's circle.
   drawTrustChart(svg, points)                 mean trust (0–1) per turn of each run, runs
       separated by a dashed line and named by their task id. */
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";

function svgEl(tag, attrs, text) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;  // never innerHTML: names are untrusted
  return node;
}

function viewSize(svg) {
  const box = svg.viewBox.baseVal;
  return box && box.width ? [box.width, box.height] : [600, 420];
}

function overlaps(a, b, pad) {
  return a.x < b.x + b.w + pad && b.x < a.x + a.w + pad &&
         a.y < b.y + b.h + pad && b.y < a.y + a.h + pad;
}

/* Move each label (in order) to the first candidate spot whose box meets no placed label and
   no circle: its radial spot, then shifted up and down by a line at a time. */
function placeLabels(labels, circles, width, height) {
  const placed = [];
  for (const item of labels) {
    const box = item.text.getBBox();
    // kept inside the picture sideways
    const dx = box.x < 2 ? 2 - box.x : Math.min(0, width - 2 - box.x - box.width);
    const step = box.height + 2;
    const first = item.down ? 1 : -1;  // away from the centre first
    let best = null;
    for (let k = 0; k <= 24 && best === null; k++) {
      for (const dy of k === 0 ? [0] : [first * k * step, -first * k * step]) {
        const cand = {x: box.x + dx, y: box.y + dy, w: box.width, h: box.height};
        if (cand.y < 0 || cand.y + cand.h > height) continue;
        if (placed.some(p => overlaps(p, cand, 1)) || circles.some(c => overlaps(c, cand, 1))) continue;
        best = {cand, dy};
        break;
      }
    }
    if (best === null) best = {cand: {x: box.x + dx, y: box.y, w: box.width, h: box.height}, dy: 0};
    item.text.setAttribute("x", (Number(item.text.getAttribute("x")) + dx).toFixed(1));
    item.text.setAttribute("y", (Number(item.text.getAttribute("y")) + best.dy).toFixed(1));
    placed.push(best.cand);
  }
}

function drawGraph(svg, graph, opts) {
  const options = opts || {};
  const nodes = graph.nodes || [];
  const [w, h] = viewSize(svg);
  const r = Math.min(w, h) / 2 - 70;
  const cx = w / 2, cy = h / 2;
  const pos = {}, angle = {};
  nodes.forEach((n, i) => {
    const a = (2 * Math.PI * i) / Math.max(nodes.length, 1) - Math.PI / 2;
    angle[n.name] = a;
    pos[n.name] = [cx + r * Math.cos(a), cy + r * Math.sin(a)];
  });
  const communities = [...new Set(nodes.map(n => n.community || n.name))].sort();
  const parts = [];
  for (const e of graph.edges || []) {
    if (!pos[e.a] || !pos[e.b]) continue;
    const strength = Number(e.strength || 0);
    const line = svgEl("line", {x1: pos[e.a][0], y1: pos[e.a][1], x2: pos[e.b][0], y2: pos[e.b][1],
      class: "edge " + (strength < 0 ? "neg" : "pos"),
      "stroke-width": (1 + 6 * Math.min(Math.abs(strength), 1)).toFixed(1),
      "stroke-opacity": (0.3 + 0.7 * Math.min(Math.max(Number(e.trust ?? 0.5), 0), 1)).toFixed(2),
      "data-a": e.a, "data-b": e.b});
    line.append(svgEl("title", {}, `${e.a} – ${e.b}: strength ${e.strength}, trust ${e.trust}`));
    parts.push(line);
  }
  const circles = [], labels = [];
  for (const n of nodes) {
    const [x, y] = pos[n.name];
    const radius = 10 + 16 * Math.min(Number(n.centrality || 0), 1);
    const group = svgEl("g", {class: "node" + (options.selected === n.name ? " selected" : ""),
                              "data-name": n.name, tabindex: "0", role: "button",
                              "aria-label": n.name});
    const colour = "c" + (communities.indexOf(n.community || n.name) % 8);
    group.append(svgEl("circle", {cx: x.toFixed(1), cy: y.toFixed(1), r: radius.toFixed(1), class: colour}));
    const cos = Math.cos(angle[n.name]), sin = Math.sin(angle[n.name]);
    const gap = radius + 6;
    const anchor = cos > 0.3 ? "start" : cos < -0.3 ? "end" : "middle";
    const ty = y + sin * gap + (sin > 0.3 ? 10 : sin < -0.3 ? -2 : 4);
    const label = svgEl("text", {x: (x + cos * gap).toFixed(1), y: ty.toFixed(1),
                                 "text-anchor": anchor, class: "label"}, n.name);
    group.append(label);
    if (options.onNode) {
      group.addEventListener("click", () => options.onNode(n));
      group.addEventListener("keydown", ev => { if (ev.key === "Enter") options.onNode(n); });
    }
    circles.push({x: x - radius, y: y - radius, w: 2 * radius, h: 2 * radius});
    labels.push({text: label, down: sin >= 0});
    parts.push(group);
  }
  svg.replaceChildren(...parts);
  placeLabels(labels, circles, w, h);
  svg.dataset.edges = String((graph.edges || []).length);
  svg.dataset.nodes = String(nodes.length);
}

function drawTrustChart(svg, points) {
  const [w, h] = viewSize(svg);
  const left = 36, right = 12, top = 12, bottom = 28;
  const x = i => left + (w - left - right) * (points.length > 1 ? i / (points.length - 1) : 0.5);
  const y = v => top + (h - top - bottom) * (1 - v);
  const parts = [svgEl("rect", {x: left, y: top, width: w - left - right, height: h - top - bottom,
                                class: "frame"})];
  for (const v of [0, 0.5, 1]) {
    parts.push(svgEl("line", {x1: left, x2: w - right, y1: y(v), y2: y(v), class: "grid"}));
    parts.push(svgEl("text", {x: left - 4, y: y(v) + 4, "text-anchor": "end", class: "axis"}, String(v)));
  }
  if (!points.length) {
    parts.push(svgEl("text", {x: w / 2, y: h / 2, "text-anchor": "middle", class: "axis"},
                     "No run of this ecosystem has been played yet."));
  }
  let run = null;
  points.forEach((p, i) => {
    if (p.run !== run) {
      run = p.run;
      parts.push(svgEl("line", {x1: x(i), x2: x(i), y1: top, y2: h - bottom, class: "run-mark"}));
      parts.push(svgEl("text", {x: x(i) + 3, y: h - bottom + 14, class: "axis"}, "#" + p.run));
    }
  });
  if (points.length) {
    parts.push(svgEl("polyline", {class: "trust-line",
      points: points.map((p, i) => `${x(i).toFixed(1)},${y(p.mean_trust).toFixed(1)}`).join(" ")}));
  }
  points.forEach((p, i) => {
    const dot = svgEl("circle", {cx: x(i).toFixed(1), cy: y(p.mean_trust).toFixed(1), r: 3, class: "trust-dot"});
    dot.append(svgEl("title", {}, `run #${p.run}, turn ${p.turn}: mean trust ${p.mean_trust}`));
    parts.push(dot);
  });
  svg.replaceChildren(...parts);
  svg.dataset.points = String(points.length);
}
