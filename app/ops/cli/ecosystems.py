"""`taskbench ecosystems …`: an ecosystem's living mode on a running API.

    ecosystems living ID                         where living mode stands
    ecosystems live ID --turns-per-day N …       set it up and start it (a daily budget)
    ecosystems pause ID / ecosystems resume ID   stop new rounds / start them again
    ecosystems stop ID                           living mode off
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from app.ops.api_errors import CliError, request
from app.ops.cli.remote import DEFAULT_API, ApiOpt, KeyOpt, client

ecosystems_app = typer.Typer(help="Living ecosystems (rounds under a daily budget) on a running "
                                  "API.", no_args_is_help=True)
EcoId = Annotated[int, typer.Argument(min=1, help="The ecosystem's id")]


def _print_living(eco_id: int, s: dict[str, Any]) -> None:
    print(f"ecosystem {eco_id}: living mode {s['status']}")
    if s["status"] == "off" and not s.get("budget"):
        return
    budget = s.get("budget") or {}
    spent = [f"{s['turns_today']} of {budget['turns_per_day']} turns"
             if budget.get("turns_per_day") else "",
             f"${s['spent_usd']:.4f} of ${budget['usd_per_day']:g}"
             if budget.get("usd_per_day") else ""]
    spent_text = ", ".join(filter(None, spent))
    print(f"rounds     {s['rounds']} ({s['rounds_today']} today; spent {spent_text})")
    if s.get("round_in_flight"):
        print(f"playing    round task {s['round_in_flight']}")
    elif s.get("next_round_at"):
        print(f"next round {s['next_round_at']}")
    if s.get("stopped"):
        print(f"stopped    {s['stopped']}")


def _call(eco_id: int, method: str, path: str, api: str, key: str,
          body: dict[str, Any] | None = None) -> None:
    with client(api, key) as c:
        _print_living(eco_id, request(c, method, f"/ecosystems/{eco_id}/living{path}",
                                      json=body).json())


@ecosystems_app.command("living")
def living_show(eco_id: EcoId, api: ApiOpt = DEFAULT_API, key: KeyOpt = "") -> None:
    """Where the ecosystem's living mode stands: status, today's spending, the next round."""
    _call(eco_id, "GET", "", api, key)


@ecosystems_app.command("live")
def living_start(
    eco_id: EcoId,
    turns_per_day: Annotated[int | None, typer.Option(min=1, help="Turns a UTC day may play")
                             ] = None,
    usd_per_day: Annotated[float | None, typer.Option(min=0, help="USD a UTC day may spend")
                           ] = None,
    interval: Annotated[int, typer.Option(min=0, help="Seconds between rounds")] = 3600,
    api: ApiOpt = DEFAULT_API, key: KeyOpt = "",
) -> None:
    """Start living mode: rounds of an ordinary day of all members, under a daily budget."""
    if turns_per_day is None and usd_per_day is None:
        raise CliError("give a daily budget: --turns-per-day, --usd-per-day or both")
    budget = {k: v for k, v in (("turns_per_day", turns_per_day), ("usd_per_day", usd_per_day))
              if v is not None}
    _call(eco_id, "PUT", "", api, key, {"budget": budget, "interval_s": interval})


@ecosystems_app.command("pause")
def living_pause(eco_id: EcoId, api: ApiOpt = DEFAULT_API, key: KeyOpt = "") -> None:
    """No new rounds (the one playing goes on to its end)."""
    _call(eco_id, "POST", "/pause", api, key)


@ecosystems_app.command("resume")
def living_resume(eco_id: EcoId, api: ApiOpt = DEFAULT_API, key: KeyOpt = "") -> None:
    """Rounds again, from the next sweep (if today's budget allows)."""
    _call(eco_id, "POST", "/resume", api, key)


@ecosystems_app.command("stop")
def living_stop(eco_id: EcoId, api: ApiOpt = DEFAULT_API, key: KeyOpt = "") -> None:
    """Living mode off."""
    _call(eco_id, "DELETE", "", api, key)
