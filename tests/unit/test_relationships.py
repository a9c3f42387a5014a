"""The relationship formula, checked by hand for a known sequence of interactions."""

from __future__ import annotations

import pytest

from app.kinds.scenario.relationships import (
    IMPACT,
    Ledger,
    Relationship,
    apply_interaction,
    pushes,
    step_strength,
    step_trust,
)


def test_known_sequence_follows_the_formula():
    # given: a neutral pair
    ledger = Ledger()

    # when: a warm collaboration, then a hostile conflict, then a greeting
    r1 = ledger.record(actor="A", target="B", interaction_type="collaboration", sentiment=1.0,
                       turn=1)
    r2 = ledger.record(actor="B", target="A", interaction_type="conflict", sentiment=-1.0,
                       turn=2)
    r3 = ledger.record(actor="A", target="B", interaction_type="greeting", sentiment=0.0,
                       turn=3)

    # then: Δ = 0.12 + 0.10 = 0.22, δ = 0.08 + 0.05 = 0.13 from (0, 0.5)
    assert r1.strength == pytest.approx(0.22, abs=1e-5)
    assert r1.trust == pytest.approx(0.5 + 0.13 * 0.5)  # 0.565
    # Δ = -0.15 - 0.10 = -0.25 → 0.22 - 0.25·1.22; δ = -0.10 - 0.05 = -0.15 → t - 0.15·t
    assert r2.strength == pytest.approx(0.22 - 0.25 * 1.22)  # -0.085
    assert r2.trust == pytest.approx(0.565 * 0.85, abs=1e-5)
    # Δ = 0.03 → s + 0.03·(1 - s); δ = 0.01
    assert r3.strength == pytest.approx(-0.085 + 0.03 * 1.085, abs=1e-5)
    assert r3.trust == pytest.approx(0.565 * 0.85 + 0.01 * (1 - 0.565 * 0.85), abs=1e-5)
    assert (r3.interactions, r3.last_interaction) == (
        3, {"turn": 3, "type": "greeting", "by": "A", "sentiment": 0.0})
    assert ledger.get("B", "A") is ledger.get("A", "B")  # one relationship per pair


def test_values_stay_in_bounds_under_any_sequence():
    rel = Relationship(a="A", b="B")
    for kind in list(IMPACT) * 30:
        for sentiment in (-5.0, 5.0):
            rel = apply_interaction(rel, interaction_type=kind, sentiment=sentiment, turn=1,
                                    actor="A")
            assert -1.0 <= rel.strength <= 1.0 and 0.0 <= rel.trust <= 1.0


def test_pushes_are_bounded_and_unknown_types_count_as_chat():
    assert pushes("betrayal", -1.0) == pytest.approx((-0.4, -0.4), abs=1e-5)
    assert pushes("hug", 0.0) == pushes("chat", 0.0)
    assert step_strength(1.0, 0.5) == 1.0 and step_strength(-1.0, -0.5) == -1.0
    assert step_trust(0.0, -0.5) == 0.0 and step_trust(1.0, 0.5) == 1.0


def test_ledger_round_trips():
    ledger = Ledger()
    ledger.record(actor="A", target="B", interaction_type="chat", sentiment=0.5, turn=1)
    again = Ledger.load(ledger.dump())
    assert again.dump() == ledger.dump()


# -- personality: compatibility of Big Five traits tempers the push on strength -------------

ALIKE = {"openness": 0.8, "agreeableness": 0.9, "extraversion": 0.6}
ALSO_ALIKE = {"openness": 0.7, "agreeableness": 0.8, "extraversion": 0.6}
OPPOSITE = {"openness": 0.1, "agreeableness": 0.05, "extraversion": 0.0, "conscientiousness": 0.0,
            "neuroticism": 1.0}
FULL = {"openness": 1.0, "agreeableness": 1.0, "extraversion": 1.0, "conscientiousness": 1.0,
        "neuroticism": 0.0}


def test_compatibility_is_one_for_twins_and_minus_one_for_opposites() -> None:
    from app.kinds.scenario.relationships import compatibility

    assert compatibility(ALIKE, ALIKE) == 1.0
    assert compatibility(FULL, OPPOSITE) < -0.8
    assert compatibility(FULL, {k: 1 - v for k, v in FULL.items()}) == -1.0
    assert compatibility(None, None) == 1.0  # both all-middling
    assert compatibility(ALIKE, ALSO_ALIKE) > compatibility(ALIKE, OPPOSITE)


def test_alike_characters_warm_faster_and_fall_out_slower() -> None:
    from app.kinds.scenario.relationships import Ledger

    def after(traits_a, traits_b, kind, sentiment):  # type: ignore[no-untyped-def]
        ledger = Ledger(traits={"A": traits_a, "B": traits_b})
        return ledger.record(actor="A", target="B", interaction_type=kind,
                             sentiment=sentiment, turn=1).strength

    warm_alike, warm_opposite = after(ALIKE, ALSO_ALIKE, "support", 0.8), after(
        FULL, OPPOSITE, "support", 0.8)
    cold_alike, cold_opposite = after(ALIKE, ALSO_ALIKE, "conflict", -0.8), after(
        FULL, OPPOSITE, "conflict", -0.8)
    assert warm_alike > warm_opposite > 0  # never a change of sign
    assert cold_opposite < cold_alike < 0
    # and at most ±30 % of the push, as documented
    plain = Ledger().record(actor="A", target="B", interaction_type="support", sentiment=0.8,
                            turn=1).strength
    assert plain * 0.7 - 1e-9 <= warm_opposite <= warm_alike <= plain * 1.3 + 1e-9


def test_without_traits_the_formula_is_unchanged() -> None:
    from app.kinds.scenario.relationships import Ledger, Relationship, apply_interaction

    rel = apply_interaction(Relationship(a="A", b="B"), interaction_type="chat", sentiment=0.5,
                            turn=1, actor="A")
    assert Ledger().record(actor="A", target="B", interaction_type="chat", sentiment=0.5,
                           turn=1).strength == rel.strength
