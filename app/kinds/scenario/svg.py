"""Self-contained SVG pictures of a run for the PDF report (no network, no plotting library).

    graph_svg(graph)            the social graph: characters on a circle, ties as lines
                                (green: strength > 0, red: < 0; width ∝ |strength|,
                                opacity ∝ trust)
    ties_chart_svg(series)      strength (top panel, −1…1) and trust (bottom panel, 0…1) of the
                                busiest pairs, turn by turn
"""

from __future__ import annotations

import math
from html import escape
from typing import Any

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
           "#7f7f7f")


def graph_svg(graph: dict[str, Any], size: int = 480) -> str:
    names = [n["name"] for n in graph["nodes"]]
    c, r = size / 2, size / 2 - 70
    pos = {n: (c + r * math.cos(2 * math.pi * i / max(len(names), 1) - math.pi / 2),
               c + r * math.sin(2 * math.pi * i / max(len(names), 1) - math.pi / 2))
           for i, n in enumerate(names)}
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{size}" height="{size}" '
             f'viewBox="0 0 {size} {size}" font-family="sans-serif" font-size="11">']
    for e in graph["edges"]:
        if e["a"] not in pos or e["b"] not in pos:
            continue
        (x1, y1), (x2, y2) = pos[e["a"]], pos[e["b"]]
        colour = "#2e7d32" if e["strength"] >= 0 else "#c62828"
        width = 1 + 6 * abs(float(e["strength"]))
        opacity = 0.25 + 0.75 * float(e["trust"])
        parts.append(f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" '
                     f'stroke="{colour}" stroke-width="{width:.1f}" '
                     f'stroke-opacity="{opacity:.2f}"/>')
    for node in graph["nodes"]:
        x, y = pos[node["name"]]
        radius = 8 + 14 * float(node.get("centrality", 0))
        parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{radius:.1f}" fill="#90caf9" '
                     f'stroke="#0d47a1"/>')
        anchor = "start" if x >= c else "end"
        dx = radius + 4 if x >= c else -radius - 4
        parts.append(f'<text x="{x + dx:.1f}" y="{y + 4:.1f}" text-anchor="{anchor}">'
                     f'{escape(node["name"])}</text>')
    parts.append("</svg>")
    return "".join(parts)


def ties_chart_svg(series: dict[str, list[tuple[int, float, float]]], turns: int,
                   width: int = 560, panel: int = 150) -> str:
    """`series`: pair label → [(turn, strength, trust)], drawn as step-free polylines."""
    left, top, gap = 40, 20, 40
    span = max(turns, 1)
    height = top + 2 * panel + gap + 20 + 16 * len(series)

    def x(turn: int) -> float:
        return left + (width - left - 20) * turn / span

    def y(value: float, lo: float, hi: float, offset: float) -> float:
        return offset + panel * (hi - value) / (hi - lo)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'font-family="sans-serif" font-size="10">']
    for offset, lo, hi, label in ((top, -1.0, 1.0, "strength"),
                                  (top + panel + gap, 0.0, 1.0, "trust")):
        parts.append(f'<rect x="{left}" y="{offset}" width="{width - left - 20}" '
                     f'height="{panel}" fill="none" stroke="#999"/>')
        parts.append(f'<text x="4" y="{offset + 10}">{label}</text>')
        parts.append(f'<text x="{left - 4}" y="{offset + 4}" text-anchor="end">{hi:g}</text>')
        parts.append(f'<text x="{left - 4}" y="{offset + panel}" text-anchor="end">{lo:g}</text>')
        for i, (_pair, points) in enumerate(series.items()):
            field = 1 if label == "strength" else 2
            coords = " ".join(f"{x(p[0]):.1f},{y(p[field], lo, hi, offset):.1f}" for p in points)
            parts.append(f'<polyline points="{coords}" fill="none" stroke-width="1.5" '
                         f'stroke="{PALETTE[i % len(PALETTE)]}"/>')
    legend_y = top + 2 * panel + gap + 10
    for i, pair in enumerate(series):
        parts.append(f'<text x="{left}" y="{legend_y + 16 * i}" '
                     f'fill="{PALETTE[i % len(PALETTE)]}">■ {escape(pair)}</text>')
    parts.append("</svg>")
    return "".join(parts)
