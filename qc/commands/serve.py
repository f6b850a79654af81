"""`qc serve`: the inspection service, after checking the database and the production model.

(`qc db`, `qc stations` and `qc keys`, which administer what it serves, are in qc/commands/db.py,
stations.py and keys.py.)
"""

from __future__ import annotations

import os
from typing import Annotated

import typer


def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on (QC_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (QC_PORT).")] = None,
    model: Annotated[str | None, typer.Option(help="Registry model name to serve (QC_MODEL_NAME).")] = None,
    workers: Annotated[int, typer.Option(
        min=1, help="Service processes on this port, sharing the database and image store; each has "
        "its own model and micro-batcher. For hosts with many cores (docs/serving.md).")] = 1,
) -> None:
    """Run the inspection service (uvicorn). Settings come from QC_* variables, .env or QC_CONFIG."""
    from inspection.errors import ConfigError

    try:
        import uvicorn

        from serving.app import create_app
        from serving.settings import ServeSettings
        from serving.slow_clients import uvicorn_options
    except ImportError as error:
        raise ConfigError(f"qc serve needs the serve extra ({error.name} is missing): "
                          "pip install 'qc[serve,cpu]' (or 'qc[serve,gpu]')") from error

    given = {"host": host, "port": port, "model_name": model}
    overrides = {k: v for k, v in given.items() if v is not None}
    settings = ServeSettings(**overrides)
    _preflight(settings)
    if workers == 1:
        # Slow and idle clients are bounded (QC_HEADER_TIMEOUT_S, QC_KEEP_ALIVE_S; serving/slow_clients.py).
        uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="warning",
                    timeout_graceful_shutdown=30, **uvicorn_options(settings))
        return
    # Several processes: uvicorn binds the port once and starts `workers` processes that accept
    # on it, each building its app from the environment (serving.app:create_app as a factory);
    # the options given here reach them as the QC_* variables they override. They share the
    # database (idempotency is its unique constraint) and the image store (content-addressed,
    # written atomically); each follows the registry's production pointer (QC_MODEL_POLL_S),
    # so a promotion made through any of them reaches all. SIGTERM to this process stops them
    # all gracefully.
    os.environ.update({f"QC_{k.upper()}": str(v) for k, v in overrides.items()})
    uvicorn.run("serving.app:create_app", factory=True, workers=workers, host=settings.host,
                port=settings.port, log_level="warning", timeout_graceful_shutdown=30,
                **uvicorn_options(settings))


def _preflight(settings) -> None:
    """What the service checks at start, checked here first: a problem is then one line that
    names the fix, not an application-startup traceback from uvicorn."""
    from inspection.errors import NotFound
    from inspection.models.registry import Registry
    from inspection.store.database import Database

    Database.from_settings(settings).dispose()  # reachable, and migrated
    if not settings.require_model:
        return
    registry = Registry(settings.models_dir)
    name = settings.model_name
    if not registry.versions(name):
        raise NotFound(f"no model named {name} in {settings.models_dir}; register one with "
                       f"qc models add model.onnx --name {name} --promote (or serve another with --model)")
    if registry.production_version(name) is None:
        registry.production(name)  # NotFound: says how to promote one
    # A production version that does not load is the service's to handle: it starts on the
    # newest earlier one that does, loudly (serving/model_manager.py), rather than not at all.
