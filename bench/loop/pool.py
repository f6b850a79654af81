"""The frames a loop bench seed starts from and serves: the labelled start set and the
production pool, for each scenario, the same for every arm of a seed (paired seeds).

    from bench.loop.pool import Scenario, draw
    drawn = draw(Scenario.LINE, seed=0, images=train_images, template_of=template, start=200, pool=600)
    drawn.start                       # 200 labelled DeepPCB boards: the start model's data
    [f.good for f in drawn.pool]      # 95% good parts (jittered templates), 5% defective boards

Two scenarios:

- `line`, a realistic line: most parts are good. A good frame is the defect-free template of a
  training board as a line camera takes it again (`inspection.data.synth.optics.jitter`:
  a shift of up to 2 px, exposure a few percent off, sensor noise, a JPEG round trip); one
  frame in `1 / defect_rate` is a defective DeepPCB board of the training boards.
- `defective`, every frame a defective DeepPCB board (the dataset as it is).

The start set depends on the seed alone (both scenarios of a seed start from the same model);
the pool on the seed and the scenario; nothing on the arm. Pure: no file is read here.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

DEFECT_RATE = 0.05  # a line a plant would see: one part in twenty defective


class Scenario(enum.StrEnum):
    LINE = "line"            # mostly good parts, defective ones at `defect_rate`
    DEFECTIVE = "defective"  # every frame a defective board


@dataclass(frozen=True)
class Frame:
    """One production frame: a defective board (`image`, with its labels) or a good part made
    from `template` by camera jitter with `jitter_seed`. `template` is the station's golden
    part for this frame either way."""

    name: str
    template: Path
    image: Path | None = None
    jitter_seed: int | None = None

    @property
    def good(self) -> bool:
        return self.image is None


@dataclass(frozen=True)
class Drawn:
    start: tuple[Path, ...]
    pool: tuple[Frame, ...]

    @property
    def defect_rate(self) -> float:
        return sum(not f.good for f in self.pool) / len(self.pool) if self.pool else 0.0


def draw(scenario: Scenario, *, seed: int, images: list[Path], template_of: Callable[[Path], Path],
         start: int, pool: int, defect_rate: float = DEFECT_RATE) -> Drawn:
    """The start set and the pool of one seed (see the module's docstring)."""
    ordered = sorted(images)
    if start + (pool if scenario is Scenario.DEFECTIVE else round(pool * defect_rate)) > len(ordered):
        raise ValueError(f"{len(ordered)} labelled images cannot give a start set of {start} and a pool of "
                         f"{pool} ({scenario}); ask for fewer")
    shuffled = ordered[:]
    random.Random(seed).shuffle(shuffled)  # the seed alone: both scenarios share the start set
    chosen, rest = shuffled[:start], shuffled[start:]
    rng = random.Random(f"{seed}-{scenario}")  # the pool: the seed and the scenario, never the arm
    rng.shuffle(rest)
    if scenario is Scenario.DEFECTIVE:
        frames = [Frame(name=p.stem, template=template_of(p), image=p) for p in rest[:pool]]
    else:
        defective = round(pool * defect_rate)
        frames = [Frame(name=p.stem, template=template_of(p), image=p) for p in rest[:defective]]
        # Good parts: templates of the training boards, each shot again by the camera; a
        # template may come back (another shot) when the pool outnumbers the templates.
        templates = ordered[:]
        rng.shuffle(templates)
        for index in range(pool - defective):
            board = templates[index % len(templates)]
            frames.append(Frame(name=f"good-{board.stem}-{index}", template=template_of(board),
                                jitter_seed=rng.randrange(2**31)))
        rng.shuffle(frames)  # production order: defective parts anywhere in the stream
    return Drawn(start=tuple(chosen), pool=tuple(frames))
