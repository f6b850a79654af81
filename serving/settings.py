"""Settings of the service, from QC_* environment variables, `.env` or the YAML in QC_CONFIG.

Example::

    QC_MAX_BATCH=8 QC_MAX_WAIT_MS=4 QC_PASS_SAMPLE_RATE=0.05 qc serve
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator

from inspection.detect.imaging import DEFAULT_MAX_PIXELS
from inspection.settings import Settings

if TYPE_CHECKING:
    from inspection.analytics.shifts import ShiftSettings


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
    spin: bool = Field(
        default=False,
        description="let ONNX Runtime's CPU threads spin between runs. Off in the service: the "
        "spinning took the cores that HTTP, decoding and recording need, and at 70% load p99/p50 "
        "was 4.9 with it and 1.7 without (320 model, 2 cores; BENCHMARKS.md, issue 16).",
    )
    commit_max_group: int = Field(
        default=64, ge=1, description="Most frames written in one transaction (group commit)."
    )
    commit_wait_ms: float = Field(
        default=0.0, ge=0, le=1000,
        description="How long a group's first frame waits for others before it is written. 0: "
        "groups are the frames judged together and those that arrive while a group is written.",
    )
    deadline_ms: float = Field(
        default=10000, gt=0, description="A frame not inferred by then gets 504 (the station retries)."
    )
    pass_sample_rate: float = Field(
        default=0.05, ge=0, le=1, description="Share of PASS images stored (FAIL and REVIEW always)."
    )
    max_body_bytes: int = Field(default=32 * 1024 * 1024, ge=1024)
    max_pixels: int = Field(default=DEFAULT_MAX_PIXELS, ge=1, description="Most pixels in one image.")
    max_request_pixels: int = Field(
        default=DEFAULT_MAX_PIXELS, ge=1,
        description="Most decoded pixels in one request (a /v2 request carries several images); "
        "over it: 413 before decoding.")
    max_pixels_in_flight: int = Field(
        default=2 * DEFAULT_MAX_PIXELS, ge=1,
        description="Most decoded pixels held by all requests at once (3 bytes each: 600 MB by "
        "default); a request that does not fit now gets 503 with Retry-After.")
    fair_capacity: int = Field(
        default=0, ge=0,
        description="Requests in flight above which each active station is held to its share "
        "(serving/admission.py); 0: two full batches per inference worker.")
    fair_window_s: float = Field(
        default=5.0, gt=0,
        description="A station (or /v2 key) that sent a request this recently counts as active "
        "when the queue is shared fairly (serving/admission.py).")
    header_timeout_s: float = Field(
        default=10.0, gt=0, description="A client must send its request line and headers within this.")
    body_timeout_s: float = Field(
        default=30.0, gt=0, description="A client must send its whole body within this (408 after).")
    keep_alive_s: int = Field(default=5, ge=1, description="An idle keep-alive connection is closed after this.")
    docs: bool = Field(
        default=True, description="Serve /docs (Swagger UI, its assets from this server) and /redoc.")
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

    # -- plant analytics (docs/analytics.md) ------------------------------------------------
    shifts: str = Field(
        default="early=06:00,late=14:00,night=22:00", description="The plant's shifts as "
        "name=HH:MM local start times in QC_TIMEZONE; each runs until the next starts.")
    alarm_interval_s: float = Field(
        default=30.0, ge=0, description="How often rollups are refreshed and alarms evaluated "
        "(0: only when asked, POST /v1/analytics/evaluate).")
    spc_rules: str = Field(
        default="EWMA,CUSUM", description="Chart rules that raise SPC alarms: any of EWMA, CUSUM, "
        "WE1, WE2, WE3, WE4, TREND. EWMA and CUSUM alone meet < 1 false alarm per 10,000 parts at "
        "2% (BENCHMARKS.md); the Western Electric rules at n=50 raise about 6.")
    spc_window: int = Field(default=40, ge=5, description="Subgroups charted by the evaluator.")
    ewma_lambda: float = Field(default=0.2, gt=0, le=1)
    ewma_width: float = Field(default=2.9, gt=0)
    cusum_shift: float = Field(default=2.0, gt=1, description="CUSUM tuned for the rate times this.")
    cusum_h: float = Field(default=5.0, gt=0)
    drift_window: int = Field(default=50, ge=10, description="Recent frames compared with the reference.")
    drift_confirmations: int = Field(
        default=2, ge=1, description="Consecutive evaluations that must name the same drift.")
    alarm_webhook: str = Field(default="", description="URL that gets each new alarm as a JSON POST.")
    alarm_mqtt: str = Field(
        default="", description="mqtt://host:port/topic: each new alarm is published to "
        "<topic>/<station> (QoS 1).")

    @field_validator("shifts")
    @classmethod
    def _shifts_parse(cls, value: str) -> str:
        cls.parse_shifts(value, "UTC")
        return value

    @staticmethod
    def parse_shifts(text: str, timezone: str) -> ShiftSettings:
        from datetime import time

        from inspection.analytics.shifts import Shift, ShiftSettings

        try:
            shifts = []
            for part in text.split(","):
                name, _, start = part.strip().partition("=")
                shifts.append(Shift(name=name.strip(), start=time.fromisoformat(start.strip())))
            return ShiftSettings(timezone=timezone, shifts=tuple(shifts))
        except ValueError as error:
            raise ValueError(f"shifts {text!r}: write name=HH:MM,name=HH:MM (e.g. "
                             f"early=06:00,late=14:00,night=22:00): {error}") from None

    @property
    def plant_shifts(self) -> ShiftSettings:
        """The shifts as `ShiftSettings` in the plant's time zone."""
        return self.parse_shifts(self.shifts, self.timezone)

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
