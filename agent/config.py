"""The agent's configuration: one YAML file per station, flags for the common fields.

Example::

    config = AgentConfig.load("station.yaml", overrides={"jpeg_quality": 85})
    config.source.kind          # SourceKind.FOLDER for an existing folder, CAMERA for "0", ...

A minimal file::

    station: press-3-top
    service: {url: "http://qc-server:8000", key_env: QC_STATION_KEY}
    source: {uri: "rtsp://10.0.0.21/stream1"}
    trigger: {mode: external, external: {kind: opcua, endpoint: "opc.tcp://plc:4840",
                                         node: "ns=2;s=Trigger"}}
    line:
      deadline_ms: 800
      safe_default: NG
      outputs: [{kind: stdout}, {kind: mqtt, host: broker, topic: "line/press-3/verdict"}]
    changeover: {kind: opcua, endpoint: "opc.tcp://plc:4840", node: "ns=2;s=Recipe"}

Every field and its default is below; docs/station.md explains them for a line engineer.
"""

from __future__ import annotations

import os
import re
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from inspection.errors import ConfigError, validation_problems

STATION_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
# The service's product names (inspection.products.PRODUCT_ID; tests/test_agent_products.py
# checks they agree): defined here so the station PC needs none of the service's rules code.
PRODUCT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


class SourceKind(StrEnum):
    CAMERA = "camera"  # a local camera by index: "0"
    STREAM = "stream"  # rtsp:// (or http://) URL
    VIDEO = "video"  # a video file, read once
    FOLDER = "folder"  # a folder watched for new image files, taken once written completely
    GLOB = "glob"  # image files matching a pattern, each once, in name order


class TriggerMode(StrEnum):
    EVERY = "every"  # every frame the source delivers
    NTH = "nth"  # every n-th frame
    MOTION = "motion"  # when the picture changed since the last frame taken
    EXTERNAL = "external"  # when the line says so (stdin, HTTP, MQTT, OPC UA)


class ExternalKind(StrEnum):
    STDIN = "stdin"  # one line per part; the line's text, if any, is the part id
    HTTP = "http"  # POST /trigger?part_id=...
    MQTT = "mqtt"  # a message on a topic; its payload, if any, is the part id
    OPCUA = "opcua"  # a change of a node's value; optionally a second node holds the part id


class ChangeoverKind(StrEnum):
    """Where the agent hears which product is on the line."""

    MQTT = "mqtt"  # a message on a topic (retained: the product at start); its payload is the product
    OPCUA = "opcua"  # a node's value (a string, or a recipe number); read at start, then on each change


class LineAnswer(StrEnum):
    """What the line is told about a part."""

    OK = "OK"
    NG = "NG"
    REVIEW = "REVIEW"


class DropPolicy(StrEnum):
    """What a full spool gives up. Either way every dropped frame is counted and reported."""

    OLDEST = "drop-oldest"  # keep the newest frames: the line's present matters most
    NEWEST = "drop-newest"  # keep the backlog: the first frames of an outage matter most


class OutputKind(StrEnum):
    STDOUT = "stdout"
    COMMAND = "command"
    WEBHOOK = "webhook"
    MQTT = "mqtt"
    OPCUA = "opcua"


class PartIdFrom(StrEnum):
    NONE = "none"
    TRIGGER = "trigger"  # the external trigger's payload
    FILENAME = "filename"  # folder/glob sources: the file's name without its suffix
    CODE = "code"  # a DataMatrix, QR or 1D code in the frame (zxing-cpp)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", use_enum_values=False)


class ServiceConfig(_Strict):
    url: str = "http://127.0.0.1:8000"
    key: str | None = Field(default=None, description="a station key; prefer key_env")
    key_env: str = "QC_STATION_KEY"
    connect_timeout_s: float = Field(default=2.0, gt=0)
    timeout_s: float = Field(default=10.0, gt=0, description="per request, reading the verdict")
    retry_initial_s: float = Field(default=0.5, gt=0)
    retry_max_s: float = Field(default=30.0, gt=0)

    def api_key(self) -> str:
        key = self.key or os.environ.get(self.key_env, "")
        if not key.strip():
            raise ConfigError(f"no station key: set {self.key_env} (or service.key in the config) to a key "
                              "from `qc keys create --role station --station <id>`")
        return key.strip()


class SourceConfig(_Strict):
    uri: str = Field(description="camera index, rtsp:// URL, video file, folder or glob pattern")
    kind: SourceKind | None = Field(default=None, description="inferred from uri when left out")
    fps: float | None = Field(default=None, gt=0, description="at most this many frames per second")
    settle_s: float = Field(default=0.5, ge=0, description="folder: a file unchanged this long is complete")
    poll_s: float = Field(default=0.2, gt=0, description="folder/glob: how often to look for new files")
    open_timeout_s: float = Field(default=5.0, gt=0, description="camera/stream: give up opening after")
    retry_initial_s: float = Field(default=1.0, gt=0)
    retry_max_s: float = Field(default=60.0, gt=0)
    exit_when_done: bool = Field(default=False, description="glob/video: stop once every frame is sent")

    @model_validator(mode="after")
    def _infer_kind(self) -> SourceConfig:
        if self.kind is None:
            self.kind = infer_source_kind(self.uri)
        return self


def infer_source_kind(uri: str) -> SourceKind:
    if re.fullmatch(r"\d{1,3}", uri.strip()):
        return SourceKind.CAMERA
    if re.match(r"^(rtsp|rtsps|http|https|rtmp)://", uri, re.IGNORECASE):
        return SourceKind.STREAM
    if any(c in uri for c in "*?["):
        return SourceKind.GLOB
    if Path(uri).is_dir():
        return SourceKind.FOLDER
    return SourceKind.VIDEO


class ExternalTrigger(_Strict):
    kind: ExternalKind = ExternalKind.STDIN
    host: str = "127.0.0.1"
    port: int | None = Field(default=None, ge=0, le=65535, description="http: listen port; mqtt: broker port")
    topic: str = "qc/trigger"
    endpoint: str | None = Field(default=None, description="opcua: opc.tcp://host:4840")
    node: str | None = Field(default=None, description="opcua: the node whose change is a trigger")
    part_node: str | None = Field(default=None, description="opcua: a node holding the part id")


class ChangeoverConfig(_Strict):
    """Product changeover from the PLC: the product named there is sent with every frame
    captured while it holds (X-Product), and announced to the service."""

    kind: ChangeoverKind
    host: str = "127.0.0.1"
    port: int | None = Field(default=None, ge=1, le=65535, description="mqtt: broker port (1883)")
    topic: str = Field(default="qc/product", description="mqtt: the product's topic")
    endpoint: str | None = Field(default=None, description="opcua: opc.tcp://plc:4840")
    node: str | None = Field(default=None, description="opcua: the node holding the product")
    announce: bool = Field(default=True, description="tell the service each changeover (PUT "
                           "/v1/stations/{station}/product), so GET /v1/stations shows the product on the line")

    @model_validator(mode="after")
    def _needs(self) -> ChangeoverConfig:
        if self.kind is ChangeoverKind.OPCUA and not (self.endpoint and self.node):
            raise ValueError("an opcua changeover needs endpoint and node")
        return self


class TriggerConfig(_Strict):
    mode: TriggerMode = TriggerMode.EVERY
    n: int = Field(default=1, ge=1, description="nth: take one frame in n")
    motion_threshold: float = Field(default=0.02, gt=0, le=1,
                                     description="motion: share of pixels that changed")
    external: ExternalTrigger = Field(default_factory=ExternalTrigger)
    wait_s: float = Field(default=1.0, gt=0, description="external: the frame must come within this")


class SpoolConfig(_Strict):
    dir: Path = Path("spool")
    max_frames: int = Field(default=20000, ge=1)
    max_bytes: int = Field(default=2 * 1024**3, ge=1024)
    drop_policy: DropPolicy = DropPolicy.OLDEST
    fsync: bool = Field(default=True, description="off only to measure what it costs")


class OutputConfig(_Strict):
    kind: OutputKind
    argv: list[str] | None = Field(default=None, description="command: argv with {line} {verdict} "
                                   "{part_id} {inspection_id} {station} substituted")
    url: str | None = Field(default=None, description="webhook: POST JSON here")
    host: str = "127.0.0.1"
    port: int | None = Field(default=None, ge=1, le=65535)
    topic: str | None = Field(default=None, description="mqtt: default qc/<station>/verdict")
    qos: int = Field(default=1, ge=0, le=2)
    endpoint: str | None = Field(default=None, description="opcua: opc.tcp://plc:4840")
    nodes: dict[str, str] = Field(default_factory=dict,
                                  description="opcua: node ids for answer, part_id, inspection_id, verdict, seq")
    timeout_s: float = Field(default=2.0, gt=0)

    @model_validator(mode="after")
    def _needs(self) -> OutputConfig:
        needed = {OutputKind.COMMAND: ("argv", self.argv), OutputKind.WEBHOOK: ("url", self.url),
                  OutputKind.OPCUA: ("endpoint", self.endpoint)}.get(self.kind)
        if needed and not needed[1]:
            raise ValueError(f"a {self.kind} output needs {needed[0]}")
        if self.kind is OutputKind.OPCUA and "answer" not in self.nodes:
            raise ValueError("an opcua output needs nodes.answer (the node the PLC reads OK/NG from)")
        return self


class LineConfig(_Strict):
    deadline_ms: float = Field(default=1000, gt=0, description="the line's cycle budget for a verdict")
    safe_default: LineAnswer = LineAnswer.NG
    review_as: LineAnswer = Field(default=LineAnswer.REVIEW, description="what a REVIEW verdict tells the line")
    outputs: list[OutputConfig] = Field(default_factory=lambda: [OutputConfig(kind=OutputKind.STDOUT)])

    @field_validator("safe_default", "review_as")
    @classmethod
    def _never_ok(cls, value: LineAnswer) -> LineAnswer:
        if value is LineAnswer.OK:
            raise ValueError("must be NG or REVIEW: a part nobody judged is never OK")
        return value


class HeartbeatConfig(_Strict):
    interval_s: float = Field(default=30.0, gt=0)
    shift: str | None = Field(default=None, pattern=r"^\d\d:\d\d-\d\d:\d\d$",
                              description="HH:MM-HH:MM (UTC) when silence is flagged; none: always")


class AgentConfig(_Strict):
    station: str = Field(pattern=f"^{STATION_ID.pattern}$")
    service: ServiceConfig = Field(default_factory=ServiceConfig)
    source: SourceConfig
    trigger: TriggerConfig = Field(default_factory=TriggerConfig)
    jpeg_quality: int = Field(default=90, ge=1, le=100)
    part_id: PartIdFrom = PartIdFrom.NONE
    code_formats: str | None = Field(default=None, description="part_id code: e.g. 'DataMatrix' or "
                                     "'QRCode,Code128' (fewer read faster: bench/agent/codes.py)")
    spool: SpoolConfig = Field(default_factory=SpoolConfig)
    line: LineConfig = Field(default_factory=LineConfig)
    heartbeat: HeartbeatConfig = Field(default_factory=HeartbeatConfig)
    changeover: ChangeoverConfig | None = Field(
        default=None, description="where the product on the line is read; none: frames carry no product "
        "and the service judges them as the station's current product (qc station product)")

    @classmethod
    def load(cls, path: Path | str | None = None, *, overrides: dict[str, Any] | None = None) -> AgentConfig:
        """The YAML file (if any) with `overrides` merged in (nested dicts merge key by key)."""
        data: dict[str, Any] = {}
        if path is not None:
            path = Path(path)
            try:
                data = yaml.safe_load(path.read_text()) or {}
            except OSError as error:
                raise ConfigError(f"cannot read the station config {path}: {error.strerror}") from error
            except yaml.YAMLError as error:
                raise ConfigError(f"{path} is not valid YAML: {error}") from error
            if not isinstance(data, dict):
                raise ConfigError(f"{path} must hold a mapping (station:, source:, ...), not {type(data).__name__}")
        merged = _merge(data, overrides or {})
        try:
            return cls.model_validate(merged)
        except ValidationError as error:
            where = f" in {path}" if path else ""
            raise ConfigError(f"invalid station config{where}: {validation_problems(error)}") from error


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """`extra` over `base`; None in `extra` means "not given" and changes nothing."""
    merged = dict(base)
    for key, given in extra.items():
        if given is None:
            continue
        value = given
        if isinstance(given, dict):
            current = merged.get(key)
            value = _merge(current if isinstance(current, dict) else {}, given)
            if not value and key not in merged:
                continue
        merged[key] = value
    return merged
