"""A simulated line: synthetic frames (or a folder's) at a rate, through the real agent, with
scenarios that a plant meets: a step in the defect rate, a slow brightness drift, a camera
going out of focus, a network outage.

Example::

    scenarios = parse_scenarios(["defect-step:at=200,rate=0.5", "blur:at=300,sigma=3",
                                 "outage:at=100,frames=50"])
    source = SimulatedSource(SyntheticFrames(n=500, defect_rate=0.05, seed=0), scenarios)
    agent = Agent(config, source=source, client=OutageClient(client, source, scenarios))
    agent.run()

Frames are numbered from 0; a scenario starts at frame `at`. `defect-step` changes the share
of frames drawn with defects (inspection.data.synth), `drift` multiplies brightness by
(1 + per_frame × frames since `at`), `blur` applies a Gaussian blur of `sigma` px, and
`outage` makes every post fail as a dropped network would while frames at..at+frames-1 are
captured (the agent spools them and replays them after). Everything else is the real agent:
spool, service, deadline, outputs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

import cv2
import numpy as np

from agent.client import Answer, Outcome, ServiceClient
from agent.config import SourceConfig, SourceKind
from agent.sources import Captured, FileSource, Source, SourceExhausted
from agent.spool import SpooledFrame
from inspection.errors import ConfigError


class ScenarioKind(StrEnum):
    DEFECT_STEP = "defect-step"
    DRIFT = "drift"
    BLUR = "blur"
    OUTAGE = "outage"


FIELDS = {ScenarioKind.DEFECT_STEP: {"at", "rate"}, ScenarioKind.DRIFT: {"at", "per_frame"},
          ScenarioKind.BLUR: {"at", "sigma"}, ScenarioKind.OUTAGE: {"at", "frames"}}


@dataclass(frozen=True)
class Scenario:
    kind: ScenarioKind
    at: int = 0
    values: dict[str, float] = field(default_factory=dict)

    def active(self, index: int) -> bool:
        if self.kind is ScenarioKind.OUTAGE:
            return self.at <= index < self.at + int(self.values.get("frames", 0))
        return index >= self.at


def parse_scenarios(texts: list[str]) -> list[Scenario]:
    """"kind:key=value,key=value" each; a ConfigError names the bad one and the fields wanted."""
    scenarios = []
    for text in texts:
        name, _, rest = text.partition(":")
        try:
            kind = ScenarioKind(name.strip())
        except ValueError:
            raise ConfigError(f"unknown scenario {name!r} in {text!r}; use one of "
                              f"{', '.join(k.value for k in ScenarioKind)}") from None
        values: dict[str, float] = {}
        for part in filter(None, rest.split(",")):
            key, _, value = part.partition("=")
            try:
                values[key.strip()] = float(value)
            except ValueError:
                raise ConfigError(f"scenario {text!r}: {key} needs a number, got {value!r}") from None
        if set(values) != FIELDS[kind]:
            raise ConfigError(f"scenario {text!r} needs exactly {', '.join(sorted(FIELDS[kind]))}, "
                              f"e.g. {kind.value}:" + ",".join(f"{k}=1" for k in sorted(FIELDS[kind])))
        scenarios.append(Scenario(kind, int(values.pop("at")), values))
    return scenarios


class SyntheticFrames(Source):
    """n frames from inspection.data.synth; frame i depends only on (seed, i)."""

    description = "synthetic frames"

    def __init__(self, *, n: int, defect_rate: float, seed: int = 0, width: int = 320, height: int = 320) -> None:
        self.n, self.defect_rate, self.seed = n, defect_rate, seed
        self.width, self.height = width, height
        self.index = 0
        self.step: Scenario | None = None

    def read(self) -> Captured | None:
        from inspection.data.synth import make_sample, sample_seed

        if self.index >= self.n:
            raise SourceExhausted(self.description)
        rate = self.step.values["rate"] if self.step and self.step.active(self.index) else self.defect_rate
        seed = sample_seed(self.seed, self.index)
        good = bool(np.random.default_rng(seed).random() >= rate)
        sample = make_sample(seed, width=self.width, height=self.height, good=good)
        captured = Captured(image=sample.image, capture_ns=time.time_ns(), name=f"sim-{self.index:06d}")
        self.index += 1
        return captured


class SimulatedSource(Source):
    """Any source (synthetic or a folder) with the scenarios' image effects applied."""

    def __init__(self, inner: Source, scenarios: list[Scenario]) -> None:
        self.inner, self.scenarios = inner, scenarios
        self.description = f"simulated line ({inner.description})"
        self.count = 0  # frames delivered so far
        self.exhausted = False
        if isinstance(inner, SyntheticFrames):
            inner.step = next((s for s in scenarios if s.kind is ScenarioKind.DEFECT_STEP), None)

    def open(self) -> None:
        self.inner.open()

    def read(self) -> Captured | None:
        try:
            captured = self.inner.read()
        except SourceExhausted:
            self.exhausted = True  # an outage ends with the run, so the spool can drain
            raise
        if captured is None:
            return None
        image = captured.image
        for scenario in self.scenarios:
            if not scenario.active(self.count):
                continue
            if scenario.kind is ScenarioKind.DRIFT:
                gain = 1.0 + scenario.values["per_frame"] * (self.count - scenario.at)
                image = cv2.convertScaleAbs(image, alpha=max(gain, 0.0))
            elif scenario.kind is ScenarioKind.BLUR:
                image = cv2.GaussianBlur(image, (0, 0), sigmaX=max(scenario.values["sigma"], 0.1))
        self.count += 1
        captured.image = image
        return captured

    def taken(self, captured: Captured) -> None:
        self.inner.taken(captured)

    def close(self) -> None:
        self.inner.close()

    @property
    def in_outage(self) -> bool:
        return not self.exhausted and any(s.kind is ScenarioKind.OUTAGE and s.active(max(self.count - 1, 0))
                                          for s in self.scenarios)


class OutageClient:
    """The real client, except that while an outage scenario is active every call fails as a
    lost network does (no connection), so the agent's spool and backoff are exercised."""

    def __init__(self, client: ServiceClient, source: SimulatedSource) -> None:
        self.client, self.source = client, source

    def inspect(self, frame: SpooledFrame) -> Answer:
        if self.source.in_outage:
            return Answer(Outcome.RETRY, reason="cannot reach the service: simulated network outage")
        return self.client.inspect(frame)

    def heartbeat(self, body: dict) -> Answer:
        if self.source.in_outage:
            return Answer(Outcome.RETRY, reason="simulated network outage")
        return self.client.heartbeat(body)

    def close(self) -> None:
        self.client.close()


def folder_frames(folder: Path) -> Source:
    """Every image of `folder` once, in name order."""
    if not folder.is_dir():
        raise ConfigError(f"no folder {folder}: give a folder of images, or leave --folder out for synthetic frames")
    return FileSource(SourceConfig(uri=str(folder / "*"), kind=SourceKind.GLOB, poll_s=0.01))
