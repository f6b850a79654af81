"""Training recipes: everything that decides a model, in one YAML file, hashed into the model.

Example recipe (recipes/pcb-cpu.yaml has a full one)::

    name: pcb
    model: yolo26n.yaml        # a model YAML (trains from scratch, offline) or a .pt to fine-tune
    data: deeppcb@latest       # a dataset version, or a path to a YOLO data.yaml
    imgsz: 320
    epochs: 25
    batch: 16
    geometry: {fliplr: 0.5, flipud: 0.5, translate: 0.05, scale: 0.2}
    augment:
      - {name: RandomBrightnessContrast, p: 0.5, brightness_limit: 0.2, contrast_limit: 0.2}
      - {name: GaussNoise, p: 0.3, std_range: [0.02, 0.08]}

    >>> recipe = Recipe.model_validate({"data": "d.yaml", "epochs": 1})
    >>> len(recipe.hash)
    64
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from inspection.detect.reference import Motion
from inspection.errors import ConfigError, validation_problems
from training.synthetic_defects import Kind as DefectKind

# Transforms that change pixels only, never the geometry: a defect stays where its box says.
# Geometry (flips, small shifts and scales) is left to Ultralytics' own augmentations, which
# move boxes with the pixels and drop boxes pushed out of frame; crops, dropout and erasing
# are refused because they can cut a defect out while its label stays.
PHOTOMETRIC = {
    "RandomBrightnessContrast", "RandomGamma", "HueSaturationValue", "ColorJitter", "CLAHE",
    "ToGray", "ImageCompression", "Sharpen", "Equalize", "RandomToneCurve", "Downscale",
    "GaussNoise", "ISONoise", "MultiplicativeNoise", "Blur", "MotionBlur", "GaussianBlur",
    "MedianBlur", "Defocus", "ZoomBlur", "GlassBlur", "RandomShadow", "PlanckianJitter",
}
REFUSED_HINT = (
    "crops, dropout and erasing can cut a defect out of the frame while its label stays; "
    "use the geometry: section (flips, translate, scale) for spatial augmentation"
)
# Ultralytics hyper-parameters the geometry: section may set, with the largest safe value.
GEOMETRY_LIMITS = {
    "fliplr": 1.0, "flipud": 1.0, "degrees": 180.0, "translate": 0.2, "scale": 0.5,
    "shear": 5.0, "perspective": 0.001, "mosaic": 1.0, "mixup": 0.5, "copy_paste": 0.5,
    "hsv_h": 0.1, "hsv_s": 0.9, "hsv_v": 0.9,
}


class AugmentStep(BaseModel):
    """One albumentations transform: its class name, probability and arguments."""

    model_config = ConfigDict(extra="allow")
    name: str
    p: float = Field(default=0.5, ge=0, le=1)

    @field_validator("name")
    @classmethod
    def _photometric_only(cls, name: str) -> str:
        if name not in PHOTOMETRIC:
            raise ValueError(
                f"augment transform {name!r} is not allowed: {REFUSED_HINT}. "
                f"Allowed: {', '.join(sorted(PHOTOMETRIC))}"
            )
        return name

    @property
    def arguments(self) -> dict[str, Any]:
        return {k: tuple(v) if isinstance(v, list) else v for k, v in (self.model_extra or {}).items()}


def _default_augment() -> list[AugmentStep]:
    # Lighting drift, sensor noise, focus and JPEG artefacts: what changes between stations
    # and shifts on a real line.
    return [
        AugmentStep(name="RandomBrightnessContrast", p=0.5, brightness_limit=0.2, contrast_limit=0.2),
        AugmentStep(name="RandomGamma", p=0.3, gamma_limit=[80, 120]),
        AugmentStep(name="GaussNoise", p=0.3, std_range=[0.02, 0.08]),
        AugmentStep(name="MotionBlur", p=0.15, blur_limit=[3, 5]),
        AugmentStep(name="GaussianBlur", p=0.1, blur_limit=[3, 5]),
        AugmentStep(name="ImageCompression", p=0.2, quality_range=[70, 100]),
        AugmentStep(name="CLAHE", p=0.05),
    ]


# Reference recipes (training/reference_data.py): the three planes are frame, reference and
# their difference; these albumentations steps treat the planes alike, the others would not.
REFERENCE_SAFE_AUGMENT = frozenset({"MotionBlur", "GaussianBlur", "GaussNoise", "Blur", "Defocus"})


def reference_defaults() -> dict[str, Any]:
    """Geometry and augmentation for a reference recipe given no other (`qc train --good-only`
    without --recipe): the defaults less what would mix the planes."""
    return {
        "geometry": {"fliplr": 0.5, "flipud": 0.5, "translate": 0.05, "scale": 0.2, "degrees": 0.0,
                     "mosaic": 1.0, "hsv_h": 0.0, "hsv_s": 0.0, "hsv_v": 0.3},
        "augment": [{"name": "GaussNoise", "p": 0.3, "std_range": [0.02, 0.06]},
                    {"name": "MotionBlur", "p": 0.1, "blur_limit": [3, 5]}],
    }


class ReferenceOptions(BaseModel):
    """`reference:` in a recipe: train on frames composed with their aligned golden part."""

    model_config = ConfigDict(extra="forbid")

    shift: float = Field(default=3.0, ge=0, le=32, description="random misregistration, pixels")
    degrees: float = Field(default=0.5, ge=0, le=10, description="random misregistration, degrees")
    motion: Motion = Field(default=Motion.TRANSLATION, description="alignment: translation or euclidean")


class GoodOnlyOptions(BaseModel):
    """`good_only:` in a recipe: train from good frames and the golden part alone, on synthetic
    defects made from them (training/synthetic_defects.py), all labelled `anomaly`."""

    model_config = ConfigDict(extra="forbid")

    variants: int = Field(default=2, ge=1, le=32, description="defective copies made of each good frame")
    keep_good: bool = Field(default=True, description="each good frame also trains as itself, without a box")
    count: tuple[int, int] = Field(default=(1, 3), description="defects per copy, least and most")
    size: tuple[float, float] = Field(default=(0.03, 0.15),
                                      description="a defect's extent, as a share of the frame's shorter side")
    kinds: list[DefectKind] = Field(default_factory=lambda: list(DefectKind), min_length=1)
    min_box: int = Field(default=0, ge=0, description="label boxes grown to this many pixels a side")

    @model_validator(mode="after")
    def _ordered(self) -> GoodOnlyOptions:
        if not 1 <= self.count[0] <= self.count[1] <= 16:
            raise ValueError(f"good_only count {list(self.count)}: give [least, most] with 1 <= least <= most <= 16")
        if not 0 < self.size[0] <= self.size[1] <= 0.5:
            raise ValueError(f"good_only size {list(self.size)}: give [least, most] shares with "
                             "0 < least <= most <= 0.5")
        return self


class Recipe(BaseModel):
    """A training recipe. Unknown keys are refused, so a typo never silently does nothing."""

    model_config = ConfigDict(extra="forbid")

    name: str = "qc"
    model: str = Field(default="yolo26n.yaml", description="model YAML, .pt checkpoint, or registry name@version")
    data: str | None = Field(default=None, description="dataset name@version or a data.yaml path")
    imgsz: int = Field(default=640, ge=32)
    epochs: int = Field(default=50, ge=1)
    batch: int = Field(default=16, ge=1)
    patience: int = Field(default=20, ge=0)
    seed: int = 0
    workers: int = Field(default=2, ge=0)
    device: str = "auto"
    time_hours: float | None = Field(default=None, gt=0, description="stop after this many hours")
    optimizer: str = "auto"
    lr0: float | None = None
    cos_lr: bool = False
    warmup_epochs: float = Field(default=3.0, ge=0, description="short runs want less than 3")
    close_mosaic: int = 10
    fraction: float = Field(default=1.0, gt=0, le=1)
    cache: bool = False
    geometry: dict[str, float] = Field(
        default_factory=lambda: {"fliplr": 0.5, "flipud": 0.5, "translate": 0.05, "scale": 0.2,
                                 "degrees": 0.0, "mosaic": 1.0, "hsv_h": 0.0, "hsv_s": 0.3, "hsv_v": 0.3}
    )
    augment: list[AugmentStep] = Field(default_factory=_default_augment)
    deploy_conf: float = Field(default=0.25, gt=0, lt=1, description="threshold evaluated for the model card")
    tile: int | None = Field(
        default=None, ge=32,
        description="train on native-resolution tiles of this many pixels (training/tiles.py)",
    )
    tile_overlap: int = Field(default=64, ge=0, description="pixels shared by neighbouring tiles")
    export_imgsz: int | None = Field(
        default=None, ge=32, description="input size of the exported model (default: imgsz)",
    )
    nbs: int | None = Field(
        default=None, ge=1, le=256,
        description="nominal batch: Ultralytics steps the optimizer every nbs/batch batches (default "
        "64); short CPU runs learn faster stepping every batch (nbs = batch)")
    reference: ReferenceOptions | None = Field(
        default=None, description="true (or options) to judge frames against their golden part",
    )
    good_only: GoodOnlyOptions | None = Field(
        default=None, description="true (or options): train on good frames with synthetic defects, "
        "one class `anomaly`; implies reference: true",
    )

    @field_validator("reference", mode="before")
    @classmethod
    def _reference_flag(cls, value: Any) -> Any:
        if value is True:
            return ReferenceOptions()
        return None if value is False else value

    @field_validator("good_only", mode="before")
    @classmethod
    def _good_only_flag(cls, value: Any) -> Any:
        if value is True:
            return GoodOnlyOptions()
        return None if value is False else value

    @model_validator(mode="after")
    def _good_only_judges_against_the_golden_part(self) -> Recipe:
        # Synthetic defects are only anomalies against the golden part: without it, a model
        # would learn what the painters draw, not what differs from the part.
        if self.good_only is not None and self.reference is None:
            self.reference = ReferenceOptions()
        return self

    @model_validator(mode="after")
    def _planes_alike(self) -> Recipe:
        if self.reference is None:
            return self
        mixing = [k for k in ("hsv_h", "hsv_s") if self.geometry.get(k, 0) > 0]
        if mixing:
            raise ValueError(f"geometry {', '.join(mixing)} would mix the frame and reference planes "
                             "of a reference recipe; set them to 0 (hsv_v is fine)")
        unsafe = [step.name for step in self.augment if step.name not in REFERENCE_SAFE_AUGMENT]
        if unsafe:
            raise ValueError(f"augment {', '.join(unsafe)} would treat the frame, reference and "
                             f"difference planes differently; a reference recipe allows "
                             f"{', '.join(sorted(REFERENCE_SAFE_AUGMENT))}")
        return self

    @field_validator("geometry")
    @classmethod
    def _bounded_geometry(cls, geometry: dict[str, float]) -> dict[str, float]:
        for key, value in geometry.items():
            if key not in GEOMETRY_LIMITS:
                raise ValueError(f"geometry key {key!r} unknown; use {', '.join(GEOMETRY_LIMITS)}")
            if not 0 <= value <= GEOMETRY_LIMITS[key]:
                raise ValueError(f"geometry {key}={value} outside [0, {GEOMETRY_LIMITS[key]}]")
        return geometry

    @field_validator("augment")
    @classmethod
    def _buildable_augment(cls, steps: list[AugmentStep]) -> list[AugmentStep]:
        """Build each transform once, strictly: a misspelt argument is refused here, when the
        recipe is read, instead of being dropped with a warning when training starts."""
        try:
            import albumentations as A
        except ImportError:  # no train extra: nothing here can train, and train() says so
            return steps
        for number, step in enumerate(steps, start=1):
            try:
                getattr(A, step.name)(p=step.p, strict=True, **step.arguments)
            except (TypeError, ValueError) as error:
                raise ValueError(
                    f"augment step {number} ({step.name}): {_one_line(error)}; fix the argument "
                    f"or remove it (albumentations {A.__version__})"
                ) from error
        return steps

    @classmethod
    def load(cls, path: str | Path) -> Recipe:
        path = Path(path)
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except OSError as error:
            raise ConfigError(f"{path}: cannot read recipe ({error.strerror})") from error
        except yaml.YAMLError as error:
            raise ConfigError(f"{path}: not valid YAML ({error})") from error
        return cls.checked(raw, source=str(path))

    @classmethod
    def checked(cls, raw: Any, *, source: str) -> Recipe:
        """`model_validate`, with a `ConfigError` naming `source` and every bad key instead
        of pydantic's traceback."""
        try:
            return cls.model_validate(raw)
        except ValidationError as error:
            raise ConfigError(f"{source}: invalid recipe: {_one_line(error)}") from error

    def _dump(self) -> dict[str, Any]:
        dump = self.model_dump(mode="json")
        for key in ("reference", "nbs", "good_only"):  # added later: recipes without them keep their hashes
            if dump.get(key) is None:
                dump.pop(key, None)
        return dump

    def to_yaml(self) -> str:
        return yaml.safe_dump(self._dump(), sort_keys=False)

    @property
    def hash(self) -> str:
        """sha256 of the canonical recipe: two models with equal hashes were made alike."""
        canonical = json.dumps(self._dump(), sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()

    def albumentations(self) -> list:
        """The `augment:` steps as albumentations objects for Ultralytics' `augmentations=`."""
        import albumentations as A

        transforms = []
        for step in self.augment:
            try:
                transforms.append(getattr(A, step.name)(p=step.p, **step.arguments))
            except (TypeError, ValueError) as error:
                raise ConfigError(f"augment {step.name}: {error}") from error
        return transforms


def _one_line(error: Exception) -> str:
    """A validation error as `key: message; key: message`, on one line."""
    if not isinstance(error, ValidationError) and isinstance(error.__cause__, ValidationError):
        error = error.__cause__  # albumentations re-raises its argument check as ValueError
    if isinstance(error, ValidationError):
        return validation_problems(error, label=lambda loc: ".".join(map(str, loc)) or "recipe")
    return " ".join(str(error).split())
