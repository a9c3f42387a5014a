"""`python -m app.ops.serve [--host H] [--port P] [--quiet]`: the API process itself.

`taskbench api` replaces itself with this (exec) once its options are checked, so the serving
process carries no CLI libraries (typer, rich, the remote client's httpx); `taskbench up` serves
in-process with the same function.
"""

from __future__ import annotations

import argparse

from app.core.config import get_settings


def serve(host: str | None, port: int | None, *, verbose: bool) -> None:
    import uvicorn

    from app.main import create_app

    settings = get_settings()
    uvicorn.run(create_app(), host=host or settings.host, port=port or settings.port,
                log_level="info", log_config=None if not verbose else uvicorn.config.LOGGING_CONFIG)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m app.ops.serve")
    parser.add_argument("--host")
    parser.add_argument("--port", type=int)
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()
    serve(args.host, args.port, verbose=not args.quiet)
