"""Scenario definitions and everything derived from a run's event log (replay, report, outcomes)."""
