"""Options that several commands share, defined once so they read and behave alike."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from inspection.settings import Settings

Providers = Annotated[
    str | None,
    typer.Option(
        "--providers",
        help="Execution providers, in order of preference: auto (TensorRT, CUDA, CPU, as "
        "available), or e.g. 'cuda,cpu'. Default: QC_PROVIDERS (auto).",
        show_default=False,
    ),
]


def provider_list(flag: str | None, settings: Settings | None = None) -> list[str]:
    """The providers to ask for: `--providers` when given, else QC_PROVIDERS (Settings), split
    as `Settings.provider_list` splits it. An unknown name is a ConfigError when the detector
    opens the model (`inspection.detect.providers.resolve`)."""
    from inspection.settings import Settings

    if flag is not None:
        settings = Settings(providers=flag)
    elif settings is None:
        settings = Settings()
    return settings.provider_list()
