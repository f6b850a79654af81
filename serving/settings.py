"""Settings of the service, from QC_* environment variables, `.env` or the YAML in QC_CONFIG.

Example::

    QC_MAX_BATCH=8 QC_MAX_WAIT_MS=4 QC_PASS_SAMPLE_RATE=0.05 qc serve
"""

from __future__ import annotations

from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator

from inspection.detect.imaging import DEFAULT_MAX_PIXELS
from inspection.settings import Settings


class ServeSettings(Settings):
    host: str = Field(default="127.0.0.1", description="Address to listen on.")
    port: int = Field(default=8000, ge=1, le=65535)
    max_batch: int = Field(default=8, ge=1, description="Most frames in one session.run.")
    max_wait_ms: float = Field(
        default=3.0, ge=0, description="How long the first frame of a batch waits for others."
    )
    queue_size: int = Field(default=64, ge=1, description="Frames waiting beyond this get 503.")
    inference_workers: int = Field(
        default=1, ge=1,
        description="Batches run at once. 1 gives the lowest latency; on a CPU box serving many "
        "stations, one per core with QC_THREADS=1 gives the most frames/s (BENCHMARKS.md).",
    )
    deadline_ms: float = Field(
        default=10000, gt=0, description="A frame not inferred by then gets 504 (the station retries)."
    )
    pass_sample_rate: float = Field(
        default=0.05, ge=0, le=1, description="Share of PASS images stored (FAIL and REVIEW always)."
    )
    max_body_bytes: int = Field(default=32 * 1024 * 1024, ge=1024)
    max_pixels: int = Field(default=DEFAULT_MAX_PIXELS, ge=1)
    decode: Literal["auto", "1", "2", "4", "8"] = Field(
        default="auto", description="JPEG decode reduction: auto, 1, 2, 4 or 8."
    )
    iou: float = Field(default=0.7, gt=0, le=1)
    model_poll_s: float = Field(
        default=2.0, gt=0, description="How often the registry's production pointer is checked."
    )
    shadow_model: str = Field(default="", description="Registry ref (name@v) run in shadow mode.")
    shadow_rate: float = Field(default=0.1, ge=0, le=1, description="Share of frames shadowed.")
    require_model: bool = Field(
        default=True, description="Refuse to start without a production model in the registry."
    )
    log_json: bool = True
    timezone: str = Field(
        default="UTC", description="The plant's time zone (IANA name, e.g. Asia/Seoul): dates on "
        "the review pages, and filter times given without an offset.")
    secure_cookies: bool = Field(
        default=False, description="Mark the sign-in cookie Secure: set it when the service is "
        "reached over TLS (behind a reverse proxy). Requests that arrive as https get it anyway.")
    session_idle_minutes: float = Field(
        default=120, gt=0, description="A page session ends after this long without a request.")
    session_hours: float = Field(default=12, gt=0, description="A page session ends this long after sign-in.")

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}; use an IANA name such as Asia/Seoul or UTC") from None
        return value

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @field_validator("decode", mode="before")
    @classmethod
    def _decode_as_text(cls, value: object) -> object:
        return str(value) if isinstance(value, int) else value  # `decode: 4` in the YAML
