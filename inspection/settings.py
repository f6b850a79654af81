"""Settings shared by every part of qc, read from the environment, `.env` or a YAML file.

Example::

    from inspection.settings import Settings

    settings = Settings()                  # QC_HOME, QC_DATABASE_URL, ... from the environment
    settings = Settings(home="/tmp/qc")    # or explicitly, e.g. in a test
    print(settings.models_dir)

All state lives under one folder, `QC_HOME` (default `~/.qc`): the database, stored images,
the model registry, dataset versions and training runs. A test or a second instance points
`QC_HOME` elsewhere and shares nothing. A YAML file named by `QC_CONFIG` supplies the same
keys without the prefix (`home: /srv/qc`); the environment wins over it. A QC_CONFIG that
names no file, a file that is not YAML, or a value of the wrong kind is a `ConfigError`
naming the key, its QC_ variable and the file (subclasses such as ServeSettings included).

Any setting can also be read from a file named by `QC_<NAME>_FILE`, as Docker and Kubernetes
mount secrets (`QC_DATABASE_URL_FILE=/run/secrets/qc-db`): the file's text, without its
trailing newline, is the value. Setting both QC_<NAME> and QC_<NAME>_FILE is a ConfigError
(which one wins would be a guess), and so is a file that cannot be read.
"""

from __future__ import annotations

import os
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError, ValidationInfo, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from inspection.errors import ConfigError, validation_problems


def default_home() -> Path:
    return Path(os.environ.get("QC_HOME") or Path.home() / ".qc").expanduser()


def _yaml_problem(error: yaml.YAMLError) -> str:
    """"expected <block end>, but found '<scalar>' at line 2, column 3" from a YAML error."""
    problem = getattr(error, "problem", None) or str(error).splitlines()[0] or type(error).__name__
    mark = getattr(error, "problem_mark", None)
    return f"{problem} at line {mark.line + 1}, column {mark.column + 1}" if mark else problem


class _ConfigFile(YamlConfigSettingsSource):
    """The YAML named by QC_CONFIG; unreadable, not YAML, or not `key: value` is a ConfigError."""

    def _read_file(self, file_path: Any) -> dict[str, Any]:
        fix = "fix the file or unset QC_CONFIG"
        try:
            data = super()._read_file(file_path)
        except yaml.YAMLError as error:
            raise ConfigError(
                f"QC_CONFIG={file_path}: not valid YAML ({_yaml_problem(error)}); {fix}"
            ) from error
        except (OSError, UnicodeDecodeError) as error:
            raise ConfigError(f"QC_CONFIG={file_path}: cannot read it ({error}); {fix}") from error
        if not isinstance(data, dict):
            raise ConfigError(
                f"QC_CONFIG={file_path}: holds a {type(data).__name__}, not keys such as "
                f"`home: /srv/qc`; {fix}"
            )
        return data


class Backend(StrEnum):
    """What runs the network: ONNX Runtime in this process, or a Triton server."""

    ONNXRUNTIME = "onnxruntime"
    TRITON = "triton"


class _SecretFiles(PydanticBaseSettingsSource):
    """QC_<NAME>_FILE: a setting's value read from a file (mounted secrets)."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # __call__ reads them all at once

    def __call__(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name in self.settings_cls.model_fields:
            variable = f"QC_{name.upper()}_FILE"
            path = os.environ.get(variable)
            if not path:
                continue
            if os.environ.get(f"QC_{name.upper()}"):
                raise ConfigError(f"both QC_{name.upper()} and {variable} are set; unset one of them")
            try:
                text = Path(path).expanduser().read_text()
            except (OSError, UnicodeDecodeError) as error:
                reason = getattr(error, "strerror", None) or str(error)
                raise ConfigError(f"{variable}={path}: cannot read it ({reason}); fix the path "
                                  f"or unset {variable}") from None
            values[name] = text.rstrip("\r\n")
        return values


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
    spin: bool = Field(
        default=True,
        description="let ONNX Runtime's CPU threads spin between runs (its default): the lowest "
        "latency for one caller; `qc serve` turns it off unless QC_SPIN=true (serving/settings.py).",
    )
    model_name: str = Field(default="default", description="Registry name of the served model.")
    label_classes: str = Field(
        default="", max_length=4000,
        description="The part's defect classes, comma-separated (e.g. scratch,dent,crack), while the "
        "production model is a good-only one, whose only class, anomaly, is no defect class: the Label "
        "Studio project's labels and the classes a reviewer may name on the review page. Unused once a "
        "supervised model (whose classes these are) is in production.")
    backend: Backend = Field(
        default=Backend.ONNXRUNTIME,
        description="What runs the network: 'onnxruntime' in this process, or 'triton': a Triton "
        "(or qc /v2) server at QC_TRITON_URL holding the repository `qc models triton` writes.",
    )
    triton_url: str = Field(default="", description="Triton HTTP address, host:8000 or https://host.")
    triton_key: str = Field(default="", description="Bearer key for a server behind auth (qc's /v2).")
    triton_pin_version: bool = Field(
        default=True,
        description="Ask Triton for the registry's production version (v3 -> Triton version 3); "
        "false takes the server's own choice (a qc /v2 peer serves only its production).",
    )
    triton_timeout_s: float = Field(default=30.0, gt=0, description="Triton connect/answer timeout.")
    image_store: str = Field(
        default="",
        description="Where frames are stored: empty for $QC_HOME/images, a folder (shared by "
        "replicas), or s3://bucket/prefix (credentials as boto3 reads them: AWS_* variables).",
    )
    s3_endpoint_url: str = Field(
        default="", description="S3-compatible endpoint (SeaweedFS, MinIO, Ceph); empty for AWS."
    )

    def __init__(self, **values: Any) -> None:
        config = os.environ.get("QC_CONFIG")
        try:
            super().__init__(**values)
        except ValidationError as error:
            def label(loc: tuple) -> str:
                key = str(loc[0]) if loc else "settings"
                where = f" or `{key}:` in {config}" if config else ""
                return f"{'.'.join(str(part) for part in loc) or key} (QC_{key.upper()}{where})"

            problems = validation_problems(error, label=label)
            raise ConfigError(f"invalid settings: {problems}; fix the value or unset it") from error

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings,
                                                      _SecretFiles(settings_cls), dotenv_settings]
        config_file = os.environ.get("QC_CONFIG")
        if config_file:
            path = Path(config_file).expanduser()
            if not path.is_file():  # pydantic-settings would silently read nothing
                raise ConfigError(
                    f"QC_CONFIG={config_file}: no such file; fix the path or unset QC_CONFIG"
                )
            sources.append(_ConfigFile(settings_cls, yaml_file=path))
        return tuple(sources)

    @field_validator("home", mode="after")
    @classmethod
    def _absolute_home(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @field_validator("triton_url", mode="after")
    @classmethod
    def _triton_has_an_address(cls, value: str, info: ValidationInfo) -> str:
        if info.data.get("backend") is Backend.TRITON and not value.strip():
            raise ValueError("QC_BACKEND=triton needs the server's address, e.g. triton:8000")
        return value.strip()

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

    def part_classes(self) -> list[str]:
        """QC_LABEL_CLASSES as a list, in its order (class ids 0, 1, ...)."""
        return [name.strip() for name in self.label_classes.split(",") if name.strip()]

    def provider_list(self) -> list[str]:
        return [p.strip() for p in self.providers.split(",") if p.strip()]

