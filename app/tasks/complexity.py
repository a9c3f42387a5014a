"""Estimating a task's complexity (1–10) when the submitter gives none.

The estimate is deliberately simple and documented: it starts at 2, adds a point per 80 words
of description (at most 4), and a point for each kind of heavier work the text names
(tests, multiple files or modules, external services or APIs, refactoring or migration,
research with citations), capped at 10. Submitters who know better pass `complexity`.
"""

from __future__ import annotations

import re

SIGNALS = {
    "tests": r"\b(test|tests|pytest|unit test|coverage)\b",
    "multi": r"\b(modules?|packages?|files|services|endpoints|classes)\b",
    "external": r"\b(api|http|database|sql|github|email|deploy|docker)\b",
    "rework": r"\b(refactor|migrat\w*|rewrite|optimi[sz]e|debug)\b",
    "research": r"\b(research|cite|citations|sources|report|analy[sz]e)\b",
}


def estimate_complexity(title: str, description: str) -> int:
    text = f"{title}\n{description}".lower()
    words = len(text.split())
    score = 2 + min(4, words // 80)
    score += sum(1 for pattern in SIGNALS.values() if re.search(pattern, text))
    return max(1, min(10, score))
