"""What the API loaded at start-up is frozen out of the garbage collector's full passes: those
passes walked every long-lived object and showed as 100–250 ms pauses at p99 of the event-log
pages (benchmarks/README.md); frozen, a full pass walks only what requests made."""

from __future__ import annotations

import gc


async def test_the_api_freezes_what_it_loaded_at_start(db) -> None:
    from app.main import create_app

    gc.unfreeze()
    app = create_app(sweeper=False)
    try:
        async with app.router.lifespan_context(app):
            assert gc.get_freeze_count() > 10_000  # the modules, the models, the app itself
    finally:
        gc.unfreeze()
