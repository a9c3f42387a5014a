"""How one interaction moves a pair's relationship — a bounded, documented formula.

A relationship belongs to an unordered pair of characters and holds
`strength` in [−1, 1] (enmity … affinity), `trust` in [0, 1], `interactions` (a count) and
`last_interaction` (turn, type, who spoke).

For an interaction of type `k` with sentiment `s` in [−1, 1] (the actor's own reading of it):

    Δ = clamp(S[k] + 0.10·s, −0.5, 0.5)          the push on strength
    δ = clamp(T[k] + 0.05·s, −0.5, 0.5)          the push on trust
    strength' = strength + Δ·(1 − strength)   if Δ ≥ 0
              = strength + Δ·(1 + strength)   if Δ < 0
    trust'    = trust + δ·(1 − trust)         if δ ≥ 0
              = trust + δ·trust               if δ < 0

Each step moves a value a fraction of the way to its bound, so it saturates instead of clipping
and can never leave its range; the same push matters less the closer a tie already is. The
base pushes S and T per interaction type are the table `IMPACT` below; an unknown type counts
as chat. Values are stored rounded to six decimals.

Personality enters through the pair's compatibility c in [−1, 1], from their Big Five traits
(each 0–1; a trait not given counts as 0.5):

    c = 1 − 2·mean(|trait_a − trait_b|)    over openness, conscientiousness, extraversion,
                                           agreeableness, neuroticism (1: alike, −1: opposite)
    Δ ← Δ·(1 + 0.3·c)   if Δ ≥ 0           alike characters warm to each other faster …
    Δ ← Δ·(1 − 0.3·c)   if Δ < 0           … and fall out more slowly; opposites the reverse

so compatibility scales the push on strength by at most ±30 %, never its sign; trust is left
to what was done. Without traits (c = 0) the formula is the one above.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

SENTIMENT_WEIGHT_STRENGTH = 0.10
SENTIMENT_WEIGHT_TRUST = 0.05
MAX_PUSH = 0.5
COMPATIBILITY_WEIGHT = 0.3
BIG_FIVE = ("openness", "conscientiousness", "extraversion", "agreeableness", "neuroticism")

# type: (S, T) — the base push on strength and trust of one interaction of that type.
IMPACT: dict[str, tuple[float, float]] = {
    "greeting": (0.03, 0.01),
    "chat": (0.05, 0.02),
    "collaboration": (0.12, 0.08),
    "support": (0.10, 0.06),
    "negotiation": (0.02, 0.03),
    "persuasion": (0.02, 0.00),
    "gossip": (0.04, -0.03),
    "conflict": (-0.15, -0.10),
    "threat": (-0.20, -0.15),
    "betrayal": (-0.30, -0.35),
}
INTERACTION_TYPES = tuple(IMPACT)


def pair_key(a: str, b: str) -> tuple[str, str]:
    """The unordered pair as a sorted tuple: (a, b) and (b, a) are one relationship."""
    return (a, b) if a <= b else (b, a)


@dataclass
class Relationship:
    a: str
    b: str
    strength: float = 0.0
    trust: float = 0.5
    interactions: int = 0
    last_interaction: dict[str, Any] | None = field(default=None)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Relationship:
        return cls(**{k: data[k] for k in ("a", "b", "strength", "trust", "interactions",
                                           "last_interaction") if k in data})


def _clamp(x: float, lo: float, hi: float) -> float:
    return lo if x < lo else hi if x > hi else x


def pushes(interaction_type: str, sentiment: float) -> tuple[float, float]:
    """(Δ, δ): the bounded pushes of one interaction on strength and trust."""
    base_s, base_t = IMPACT.get(interaction_type, IMPACT["chat"])
    s = _clamp(float(sentiment), -1.0, 1.0)
    return (
        _clamp(base_s + SENTIMENT_WEIGHT_STRENGTH * s, -MAX_PUSH, MAX_PUSH),
        _clamp(base_t + SENTIMENT_WEIGHT_TRUST * s, -MAX_PUSH, MAX_PUSH),
    )


def compatibility(a: dict[str, float] | None, b: dict[str, float] | None) -> float:
    """c in [−1, 1] from two characters' Big Five traits (see the module's docstring)."""
    def trait(traits: dict[str, float] | None, name: str) -> float:
        value = (traits or {}).get(name, 0.5)
        return _clamp(float(value), 0.0, 1.0) if isinstance(value, int | float) else 0.5

    gap = sum(abs(trait(a, t) - trait(b, t)) for t in BIG_FIVE) / len(BIG_FIVE)
    return round(1 - 2 * gap, 6)


def temper(push: float, compat: float) -> float:
    """The strength push scaled by the pair's compatibility (never changing its sign)."""
    factor = 1 + COMPATIBILITY_WEIGHT * compat if push >= 0 else 1 - COMPATIBILITY_WEIGHT * compat
    return push * factor


def step_strength(strength: float, push: float) -> float:
    """Move strength toward +1 (push ≥ 0) or −1 by the fraction |push| of the distance left."""
    moved = strength + push * (1 - strength) if push >= 0 else strength + push * (1 + strength)
    return _clamp(moved, -1.0, 1.0)


def step_trust(trust: float, push: float) -> float:
    """Move trust toward 1 (push ≥ 0) or 0 by the fraction |push| of the distance left."""
    moved = trust + push * (1 - trust) if push >= 0 else trust + push * trust
    return _clamp(moved, 0.0, 1.0)


def apply_interaction(
    rel: Relationship, *, interaction_type: str, sentiment: float, turn: int, actor: str,
    compat: float = 0.0,
) -> Relationship:
    """The relationship after one interaction (a new object; the old one is untouched)."""
    d_strength, d_trust = pushes(interaction_type, sentiment)
    d_strength = temper(d_strength, compat)
    return Relationship(
        a=rel.a,
        b=rel.b,
        strength=round(step_strength(rel.strength, d_strength), 6),
        trust=round(step_trust(rel.trust, d_trust), 6),
        interactions=rel.interactions + 1,
        last_interaction={"turn": turn, "type": interaction_type, "by": actor,
                          "sentiment": round(float(sentiment), 3)},
    )


class Ledger:
    """All relationships of one run, keyed by pair; absent pairs start neutral."""

    def __init__(self, rels: dict[tuple[str, str], Relationship] | None = None,
                 traits: dict[str, dict[str, float]] | None = None) -> None:
        self.rels: dict[tuple[str, str], Relationship] = dict(rels or {})
        self.traits: dict[str, dict[str, float]] = dict(traits or {})

    def get(self, a: str, b: str) -> Relationship:
        key = pair_key(a, b)
        return self.rels.get(key) or Relationship(a=key[0], b=key[1])

    def set(self, rel: Relationship) -> None:
        self.rels[pair_key(rel.a, rel.b)] = rel

    def record(self, *, actor: str, target: str, interaction_type: str, sentiment: float,
               turn: int) -> Relationship:
        """Apply one interaction between `actor` and `target` and return the new relationship."""
        compat = compatibility(self.traits.get(actor), self.traits.get(target)) \
            if self.traits else 0.0
        rel = apply_interaction(self.get(actor, target), interaction_type=interaction_type,
                                sentiment=sentiment, turn=turn, actor=actor, compat=compat)
        self.set(rel)
        return rel

    def of(self, name: str) -> list[Relationship]:
        return [r for r in self.rels.values() if name in (r.a, r.b)]

    def dump(self) -> list[dict[str, Any]]:
        return [r.as_dict() for _, r in sorted(self.rels.items())]

    @classmethod
    def load(cls, rows: list[dict[str, Any]]) -> Ledger:
        ledger = cls()
        for row in rows:
            ledger.set(Relationship.from_dict(row))
        return ledger
