"""Station decision rules: from `Detections` to a verdict, PASS, FAIL or REVIEW.

Each station has its own rules (a YAML file or the API), versioned; every inspection record
keeps the version that judged it. Example YAML::

    enabled: true
    area_unit: mm2          # px2 (default) or mm2, with px_per_mm
    px_per_mm: 48           # calibration of this camera
    default: {fail_conf: 0.5, review_conf: 0.25}
    classes:
      scratch:  {fail_conf: 0.4, min_area: 0.5}           # mm2 here
      particle: {fail_conf: 0.6, max_count: 2}             # up to 2 confident particles pass
    roi: [[[0, 0], [2448, 0], [2448, 1900], [0, 1900]]]    # only this region counts
    ignore: [[[100, 100], [300, 100], [300, 200], [100, 200]]]  # a fixture, always visible
    quality: {min_brightness: 40, max_brightness: 230, min_sharpness: 15}  # optional gate
    damaged_image: refuse   # or review: a damaged frame is judged REVIEW ("damaged image")
    min_alignment: 0.6      # a reference station: a frame aligning worse is REVIEW
    tiling: {size: 640, overlap: 96}   # judge large frames tile by tile at native scale
    anomaly_fail_conf: 0.8  # a good-only model's boxes (class anomaly): FAIL from here; unset: REVIEW

The order of judgement, and why:
-1. At a station judged against its reference image (a reference model), a frame that aligns
   to the reference with a score below `min_alignment` is REVIEW (rule "cannot align to
   reference"), its boxes still shown: the comparison it was judged by is not trustworthy.
0. With a `quality` gate, a frame too dark, too bright or blurred is REVIEW (rule "image
   quality: ..."), its boxes still shown: a bad image proves nothing either way.
1. Boxes whose centre lies outside every ROI polygon, or inside an ignore polygon, are dropped
   (fixtures and edges are not the part).
2. Boxes smaller than the class's `min_area` are dropped (dust-sized, below the spec).
3. FAIL when a class has more than `max_count` boxes at or above its `fail_conf`.
4. REVIEW when any remaining box lies in the review band [review_conf, fail_conf): a person
   looks at uncertain frames instead of the line guessing.
5. PASS otherwise, including confident boxes within a class's `max_count` (in spec).

Boxes of class `anomaly` (a good-only model's: inspection/detect/goodonly.py, or a learned
detector of that one class) are REVIEW by default, never FAIL: a model that has seen no defect
cannot tell one from a good variation it was never shown, so a person looks. Once its boxes
are trusted, `anomaly_fail_conf` makes those at or above it count toward FAIL; an explicit
`classes: {anomaly: ...}` rule wins over both.

Example::

    >>> rules = StationRules.model_validate({"default": {"fail_conf": 0.5, "review_conf": 0.3}})
    >>> decide(Detections.empty(), rules).verdict
    <Verdict.PASS: 'PASS'>
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Annotated, Literal, TypeVar

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from inspection.analytics.image_stats import ImageStats, QualitySettings, check_quality
from inspection.detect.tiling import Tiling
from inspection.detections import Detections
from inspection.errors import ConfigError, validation_problems

# Bounds on what a station's rules may hold: rules are judged on every frame (each polygon
# costs a point-in-polygon test per box), stored with every version and sent to every page
# that shows them. Far above any real fixture mask (a few dozen points), far below what would
# make a request slow or a row huge.
MAX_POLYGON_POINTS = 1000
MAX_POLYGONS = 64
MAX_CLASSES = 1000

Polygon = Annotated[list[tuple[float, float]], Field(max_length=MAX_POLYGON_POINTS)]
DAMAGED_IMAGE_RULE = "damaged image"
CANNOT_ALIGN_RULE = "cannot align to reference"
# Normalised correlation of frame and aligned reference: DeepPCB pairs scored 0.88-0.99 and
# mismatched boards at most 0.30 (40 val boards shifted by up to 8 px; inspection/detect/reference.py).
DEFAULT_MIN_ALIGNMENT = 0.6
# The one class of a good-only model (inspection/detect/goodonly.py NAMES, and a learned
# good-only detector's): its boxes are REVIEW unless the rules say otherwise.
ANOMALY_CLASS = "anomaly"
# An `anomaly` box's fail threshold while the rules set none: above any confidence.
NEVER_FAILS = 2.0


class Verdict(StrEnum):
    PASS = "PASS"
    FAIL = "FAIL"
    REVIEW = "REVIEW"


class DamagedFrames(StrEnum):
    """What a station's service does with a frame whose pixel data is corrupt or incomplete."""

    REFUSE = "refuse"  # HTTP 400 with libjpeg's reason; the station sends the frame again
    REVIEW = "review"  # a REVIEW verdict, rule "damaged image", the frame stored for a person


class ClassRule(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)  # JSON cannot hold them
    fail_conf: float = Field(default=0.5, gt=0, le=1, description="at or above: counts toward FAIL")
    review_conf: float = Field(default=0.25, gt=0, le=1, description="review band starts here")
    min_area: float = Field(default=0, ge=0, description="smaller boxes are ignored (area_unit)")
    max_count: int = Field(default=0, ge=0, description="confident boxes tolerated before FAIL")

    @model_validator(mode="after")
    def _band(self) -> ClassRule:
        if self.review_conf > self.fail_conf:
            raise ValueError(f"review_conf {self.review_conf} is above fail_conf {self.fail_conf}")
        return self


class TileSettings(BaseModel):
    """Judge each frame in `size`-pixel tiles (frame pixels) overlapping by `overlap`: for
    cameras far larger than the network, whose small defects a whole-frame shrink would lose
    (inspection/detect/tiling.py)."""

    model_config = ConfigDict(extra="forbid")
    size: int = Field(ge=32, le=8192)
    overlap: int = Field(default=64, ge=0)

    @model_validator(mode="after")
    def _overlap_below_size(self) -> TileSettings:
        if self.overlap >= self.size:
            raise ValueError(f"tiling overlap {self.overlap} must be below the tile size {self.size}")
        return self

    def tiling(self) -> Tiling:
        return Tiling(size=self.size, overlap=self.overlap)


class StationRules(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)  # JSON cannot hold them
    enabled: bool = True
    area_unit: Literal["px2", "mm2"] = "px2"
    px_per_mm: float | None = Field(default=None, gt=0)
    default: ClassRule = Field(default_factory=ClassRule)
    classes: dict[str, ClassRule] = Field(default_factory=dict, max_length=MAX_CLASSES)
    roi: list[Polygon] = Field(default_factory=list, max_length=MAX_POLYGONS,
                               description="polygons that count; empty: all")
    ignore: list[Polygon] = Field(default_factory=list, max_length=MAX_POLYGONS,
                                  description="polygons that never count")
    damaged_image: DamagedFrames = Field(
        default=DamagedFrames.REFUSE,
        description="a frame with corrupt or incomplete pixel data: refuse (400, the default) or "
        "review (a REVIEW verdict with rule 'damaged image'); never PASS")
    quality: QualitySettings | None = Field(
        default=None, description="per-frame image-quality gate (too dark, too bright, blurred "
        "gives REVIEW with rule 'image quality'); off when absent")
    tiling: TileSettings | None = Field(
        default=None, description="judge frames tile by tile at native resolution; off when absent")
    min_alignment: float = Field(
        default=DEFAULT_MIN_ALIGNMENT, ge=0, le=1,
        description="with a reference model: a frame whose alignment to the station's reference "
        "scores below this is REVIEW with rule 'cannot align to reference', never PASS")
    anomaly_fail_conf: float | None = Field(
        default=None, gt=0, le=1,
        description="boxes of class 'anomaly' (a good-only model's) are REVIEW by default, never FAIL; "
        "once they are trusted, those at or above this confidence count toward FAIL")

    @model_validator(mode="after")
    def _calibrated(self) -> StationRules:
        if self.area_unit == "mm2" and not self.px_per_mm:
            raise ValueError("area_unit mm2 needs px_per_mm (the camera's calibration)")
        for polygon in [*self.roi, *self.ignore]:
            if len(polygon) < 3:
                raise ValueError(f"a polygon needs at least 3 points, got {polygon}")
        return self

    def check_classes(self, names: Iterable[str], *, model: str) -> None:
        """`ConfigError` when the rules name a class `model` does not detect: a misspelt class
        ("scratches") would otherwise be judged by the default thresholds without a word."""
        known = set(names)
        unknown = sorted(set(self.classes) - known)
        if unknown:
            raise ConfigError(
                f"the rules name classes {model} does not detect: {', '.join(unknown)}; "
                f"its classes are {', '.join(sorted(known))}"
            )

    def for_class(self, name: str) -> ClassRule:
        if name == ANOMALY_CLASS and name not in self.classes:
            return self.anomaly_rule
        return self.classes.get(name, self.default)

    @property
    def anomaly_rule(self) -> ClassRule:
        """The rule of an `anomaly` box the rules do not name: the default's review threshold,
        and FAIL only from `anomaly_fail_conf` (unset: never; a confidence is at most 1, so a
        fail threshold above it keeps every box in the review band)."""
        fail = self.anomaly_fail_conf if self.anomaly_fail_conf is not None else NEVER_FAILS
        return ClassRule.model_construct(fail_conf=fail, review_conf=min(self.default.review_conf, fail),
                                         min_area=self.default.min_area, max_count=self.default.max_count)

    @property
    def lowest_conf(self) -> float:
        """The lowest threshold any class uses: the detector must report boxes from here."""
        return min([self.default.review_conf, *(r.review_conf for r in self.classes.values())])

    @classmethod
    def parse(cls, data: dict | str | None, *, source: str = "rules") -> StationRules:
        """From a dict or YAML text; `ConfigError` names the source and each problem."""
        return parse_body(cls, data, source=source, what="rules")


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    rule: str  # the rule that decided, in words
    kept: Detections  # boxes that counted, after ROI, ignore and size filters
    areas: np.ndarray = field(default_factory=lambda: np.zeros(0))  # in the rules' area unit


ModelT = TypeVar("ModelT", bound=BaseModel)


def parse_body(cls: type[ModelT], data: dict | str | None, *, source: str, what: str) -> ModelT:
    """A YAML or JSON body (a station's rules, a product's profile) from a dict or YAML text;
    `ConfigError` names the source and each problem."""
    try:
        raw = yaml.safe_load(data) if isinstance(data, str) else data
    except yaml.YAMLError as error:
        raise ConfigError(f"{source}: not valid YAML ({error})") from error
    try:
        return cls.model_validate(raw or {})
    except ValidationError as error:
        problems = validation_problems(error, label=lambda loc: ".".join(map(str, loc)) or what)
        raise ConfigError(f"{source}: invalid {what}: {problems}") from error


def _inside(points: np.ndarray, polygon: Polygon) -> np.ndarray:
    import cv2

    contour = np.asarray(polygon, dtype=np.float32).reshape(-1, 1, 2)
    return np.array(
        [cv2.pointPolygonTest(contour, (float(x), float(y)), False) >= 0 for x, y in points], bool
    )


def decide(detections: Detections, rules: StationRules, *, stats: ImageStats | None = None,
           alignment: float | None = None) -> Decision:
    """The verdict for one frame's detections under one station's rules. With `stats` and
    the rules' `quality` gate, a frame too dark, too bright or blurred is REVIEW whatever its
    boxes say: a bad image is no evidence either way (a person looks; the line does not pass
    a part on a broken image, nor fail a flood of good ones). `alignment`, the score of a
    frame judged against its reference, below `min_alignment` is REVIEW alike."""
    if alignment is not None and alignment < rules.min_alignment:
        judged = decide(detections, rules, stats=stats)
        return Decision(Verdict.REVIEW, f"{CANNOT_ALIGN_RULE} (score {alignment:.2f} < "
                        f"min_alignment {rules.min_alignment})", judged.kept, judged.areas)
    if rules.quality is not None and stats is not None:
        issue = check_quality(stats, rules.quality)
        if issue is not None:
            judged = decide(detections, rules)
            return Decision(Verdict.REVIEW, str(issue), judged.kept, judged.areas)
    keep = np.ones(len(detections), bool)
    centers = detections.centers
    if rules.roi and len(detections):
        keep &= np.any([_inside(centers, p) for p in rules.roi], axis=0)
    for polygon in rules.ignore:
        if len(detections):
            keep &= ~_inside(centers, polygon)
    px_per_mm = rules.px_per_mm if rules.area_unit == "mm2" else None  # set: StationRules checks it
    areas = detections.area / (px_per_mm**2 if px_per_mm else 1.0)
    names = detections.class_names
    class_rules = [rules.for_class(n) for n in names]
    for i, rule in enumerate(class_rules):
        if areas[i] < rule.min_area or detections.confidence[i] < rule.review_conf:
            keep[i] = False
    kept = detections[keep]
    kept_areas = areas[keep]
    kept_rules = [r for r, k in zip(class_rules, keep, strict=True) if k]
    if not len(kept):
        return Decision(Verdict.PASS, "no defect at or above its review threshold", kept, kept_areas)

    confident = np.array([s >= r.fail_conf for s, r in zip(kept.confidence, kept_rules, strict=True)])
    for name in dict.fromkeys(kept.class_names):
        mask = np.array([n == name for n in kept.class_names])
        count = int((confident & mask).sum())
        rule = rules.for_class(name)
        if count > rule.max_count:
            best = float(kept.confidence[mask].max())
            return Decision(
                Verdict.FAIL,
                f"{name}: {count} at or above fail_conf {rule.fail_conf} (best {best:.2f}), "
                f"{rule.max_count} tolerated",
                kept,
                kept_areas,
            )
    uncertain = ~confident
    if uncertain.any():
        i = int(np.argmax(np.where(uncertain, kept.confidence, -1)))
        rule = kept_rules[i]
        if rule.fail_conf > 1:
            return Decision(Verdict.REVIEW, f"{kept.class_names[i]}: confidence {kept.confidence[i]:.2f}; REVIEW "
                            "until the rules' anomaly_fail_conf trusts a good-only model", kept, kept_areas)
        return Decision(
            Verdict.REVIEW,
            f"{kept.class_names[i]}: confidence {kept.confidence[i]:.2f} in the review band "
            f"[{rule.review_conf}, {rule.fail_conf})",
            kept,
            kept_areas,
        )
    return Decision(Verdict.PASS, "confident defects within their class's max_count", kept, kept_areas)
