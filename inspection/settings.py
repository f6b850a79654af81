"""Settings shared by every part of qc, read from the environment, `.env` or a YAML file.

Example::

    from inspection.settings import Settings

    settings = Settings()                  # QC_HOME, QC_DATABASE_URL, ... from the environment
    settings = Settings(home="/tmp/qc")    # or explicitly, e.g. in a test
    print(settings.models_dir)

All state lives under one folder, `QC_HOME` (default `~/.qc`): the database, stored images,
the model registry, dataset versions and training runs. A test or a second instance points
`QC_HOME` elsewhere and shares nothing. A YAML file named by `QC_CONFIG` supplies the same
keys without the prefix (`home: /srv/qc`); the environment wins over it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)


def default_home() -> Path:
    return Path(os.environ.get("QC_HOME") or Path.home() / ".qc").expanduser()


class Settings(BaseSettings):
    """Where state lives and how the detector runs."""

    model_config = SettingsConfigDict(
        env_prefix="QC_", env_file=".env", extra="ignore", validate_default=True
    )

    home: Path = Field(default_factory=default_home, description="Folder that holds all state.")
    database_url: str = Field(
        default="",
        description="SQLAlchemy URL; empty means SQLite at $QC_HOME/qc.db. "
        "PostgreSQL: postgresql://user:password@host:5432/db",
    )
    providers: str = Field(
        default="auto",
        description="ONNX Runtime execution providers, comma-separated, in order of preference: "
        "'auto' (TensorRT, then CUDA, then CPU, as available), or e.g. 'cuda,cpu', 'cpu'.",
    )
    threads: int = Field(default=0, ge=0, description="intra-op threads for CPU; 0 lets ORT pick.")
    model_name: str = Field(default="default", description="Registry name of the served model.")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings, dotenv_settings]
        config_file = os.environ.get("QC_CONFIG")
        if config_file:
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=config_file))
        return tuple(sources)

    @field_validator("home", mode="after")
    @classmethod
    def _absolute_home(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'qc.db'}"

    @property
    def images_dir(self) -> Path:
        return self.home / "images"

    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    @property
    def datasets_dir(self) -> Path:
        return self.home / "datasets"

    @property
    def runs_dir(self) -> Path:
        return self.home / "runs"

    @property
    def ultralytics_dir(self) -> Path:
        """Ultralytics' settings folder (YOLO_CONFIG_DIR), kept out of the user's home."""
        return self.home / "ultralytics"

    def ensure_dirs(self) -> None:
        for folder in (self.home, self.images_dir, self.models_dir, self.datasets_dir):
            folder.mkdir(parents=True, exist_ok=True)

    def provider_list(self) -> list[str]:
        return [p.strip() for p in self.providers.split(",") if p.strip()]

    def dump(self) -> dict[str, Any]:
        return {**self.model_dump(mode="json"), "db_url": self.db_url}
