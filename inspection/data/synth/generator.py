"""Synthetic inspection frames with exact labels, and the YOLO datasets written from them.

Example::

    >>> from inspection.data.synth.generator import make_sample, sample_seed
    >>> sample = make_sample(sample_seed(0, 5), width=320, height=240, surface="foil")
    >>> sample.image.shape, sample.surface, sample.detections.image_wh
    ((240, 320, 3), 'foil', (320, 240))

    write_dataset("data/synth", n=200, seed=0)     # images/, labels/ and data.yaml

Image i of a dataset is `make_sample(sample_seed(seed, i))`: it depends on the seed and its
index alone, so a dataset of 10 images is the first 10 of one of 20, byte for byte.
"""

from __future__ import annotations

import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from inspection.data.formats.yolo import label_text, write_data_yaml
from inspection.data.synth.defects import CLASS_NAMES, DRAWERS, MISSING, Stamp
from inspection.data.synth.optics import expose
from inspection.data.synth.surfaces import SURFACES, Canvas, render_surface
from inspection.detections import Detections
from inspection.errors import ConfigError, DatasetError

# About one part in six is good: enough for the detector to learn that a clean surface has
# nothing to report, few enough that most images teach it defects.
GOOD_FRACTION = 0.17
DEFECT_COUNTS = (1, 2, 3, 4)
DEFECT_COUNT_WEIGHTS = (0.4, 0.3, 0.18, 0.12)
# Two defects' boxes may overlap this much (intersection over union) and no more.
MAX_IOU = 0.3
TRIES_PER_DEFECT = 12
MIN_SIDE = 64
IMAGE_FORMATS = ("jpg", "png")
JPEG_QUALITY = 92


@dataclass(frozen=True, eq=False)
class Sample:
    """One synthetic frame and its ground truth.

    Attributes:
        image: (H, W, 3) uint8 BGR, as a camera would deliver it.
        detections: the defects' boxes, confidence 1.0, names = CLASS_NAMES.
        surface: which of SURFACES was drawn.
        masks: one boolean (H, W) image per box: the pixels that defect changed.
        reference: the same part without its defects, as a station's golden sample would be
            photographed (same light, its own sensor noise), when asked for.
    """

    image: np.ndarray
    detections: Detections
    surface: str
    masks: tuple[np.ndarray, ...] = field(default=())
    reference: np.ndarray | None = None


@dataclass(frozen=True)
class DatasetSummary:
    """What `write_dataset` wrote."""

    root: Path
    data_yaml: Path
    images: dict[str, int]  # per split: train, val
    boxes: dict[str, int]  # per class name
    good: int  # images without a defect


def sample_seed(seed: int, index: int) -> int:
    """The seed of image `index` in a dataset made with `seed`."""
    if seed < 0 or index < 0:
        raise ConfigError(f"seed and index must be 0 or more, got seed={seed}, index={index}")
    state = np.random.SeedSequence([seed, index]).generate_state(2, dtype=np.uint32)
    return int(state[0]) << 32 | int(state[1])


def make_sample(
    seed: int,
    *,
    width: int = 640,
    height: int = 640,
    surface: str | None = None,
    good: bool | None = None,
    defects: tuple[int, int] | None = None,
    reference: bool = False,
    part: int | None = None,
) -> Sample:
    """Draw one frame from `seed` alone (and with `reference`, its defect-free golden part).

    `part` fixes the part design and the station's light: frames with the same `part` and
    different seeds show one product, as a line's camera does, each with its own defects and
    sensor noise (what a reference station judges against one golden image).

    `surface` picks the surface (default: one at random); `good=True` draws the same frame
    without its defects, `good=False` forces at least one defect, None leaves it to chance
    (GOOD_FRACTION). The surface, light and noise do not depend on `good`: a good render is
    the defective one with its defects left out, up to the noise on the defects' pixels.
    """
    _check_size(width, height)
    if surface is not None and surface not in SURFACES:
        raise ConfigError(f"unknown surface {surface!r}; choose one of {', '.join(SURFACES)}")
    if seed < 0:
        raise ConfigError(f"seed must be 0 or more, got {seed}")
    # One stream per stage, so forcing the surface or `good` changes nothing else in the frame.
    # Children are fixed by index: spawn(5)[:4] are the streams spawn(4) gave before references.
    children = np.random.SeedSequence(seed).spawn(5)
    if part is not None:  # the design and the light from the part; defects and noise per frame
        if part < 0:
            raise ConfigError(f"part must be 0 or more, got {part}")
        design = np.random.SeedSequence(part).spawn(5)
        children = [design[0], design[1], children[2], design[3], children[4]]
    layout_rng, surface_rng, defect_rng, optics_rng = (np.random.default_rng(c) for c in children[:4])
    drawn_surface = SURFACES[int(layout_rng.integers(len(SURFACES)))]
    drawn_good = bool(layout_rng.random() < GOOD_FRACTION)
    surface = surface or drawn_surface
    good = drawn_good if good is None else good

    canvas = render_surface(surface, surface_rng, width=width, height=height)
    clean = canvas.image.copy() if reference else None
    stamps = [] if good else _add_defects(canvas, defect_rng, counts=defects)
    image = expose(canvas.image, optics_rng)
    if part is not None:  # the same light as the part's other frames, this frame's own noise
        noise = np.random.default_rng(children[2].spawn(1)[0]).normal(0, 2.0, image.shape)
        image = np.clip(image + noise, 0, 255).astype(np.uint8)
    golden = None
    if clean is not None:
        # The same light (the optics stream again), then the golden shot's own sensor noise.
        golden = expose(clean, np.random.default_rng(children[3]))
        noise = np.random.default_rng(children[4]).normal(0, 2.0, golden.shape)
        golden = np.clip(golden + noise, 0, 255).astype(np.uint8)
    if stamps:
        detections = Detections(
            xyxy=np.array([s.box for s in stamps], np.float32),
            confidence=np.ones(len(stamps), np.float32),
            class_id=np.array([s.class_id for s in stamps], np.int64),
            names=CLASS_NAMES,
            image_wh=(width, height),
        )
    else:
        detections = Detections.empty(names=CLASS_NAMES, image_wh=(width, height))
    masks = tuple(s.mask(width, height) for s in stamps)
    return Sample(image=image, detections=detections, surface=surface, masks=masks, reference=golden)


def _add_defects(canvas: Canvas, rng: np.random.Generator, *, counts: tuple[int, int] | None = None
                 ) -> list[Stamp]:
    if counts is None:
        count = int(rng.choice(DEFECT_COUNTS, p=DEFECT_COUNT_WEIGHTS))
    else:  # denser parts: more boxes per image teach a detector faster (the demo's model)
        count = int(rng.integers(counts[0], counts[1] + 1))
    classes = [int(c) for c in rng.integers(len(CLASS_NAMES), size=count)]
    # Missing features first: they repaint what lay beneath a feature, which would wipe out
    # any defect drawn there before.
    classes.sort(key=lambda c: c != MISSING)
    stamps: list[Stamp] = []
    for wanted in classes:
        class_id = wanted
        for _ in range(TRIES_PER_DEFECT):
            stamp = DRAWERS[class_id](canvas, rng)
            if stamp is None and class_id == MISSING and not _has_removable(canvas):
                class_id = int(rng.integers(MISSING))  # nothing here can go missing
                continue
            if stamp is None or any(_too_close(stamp.box, s.box) for s in stamps):
                continue
            stamp.apply(canvas.image)
            if stamp.feature is not None:
                canvas.removed.add(stamp.feature)
            stamps.append(stamp)
            break
    if not stamps:  # a defective part needs a defect: a speck of dust always fits somewhere
        for _ in range(100):
            stamp = DRAWERS[int(rng.integers(MISSING))](canvas, rng)
            if stamp is not None:
                stamp.apply(canvas.image)
                stamps.append(stamp)
                break
    return stamps


def _has_removable(canvas: Canvas) -> bool:
    return any(f.removable and f.index not in canvas.removed for f in canvas.features)


def _too_close(a, b) -> bool:
    """Overlap beyond MAX_IOU, or one box mostly inside the other."""
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return False
    inter = iw * ih
    area_a = (a[2] - a[0]) * (a[3] - a[1])
    area_b = (b[2] - b[0]) * (b[3] - b[1])
    return inter / (area_a + area_b - inter) >= MAX_IOU or inter >= 0.5 * min(area_a, area_b)


def _check_size(width: int, height: int) -> None:
    if width < MIN_SIDE or height < MIN_SIDE:
        raise ConfigError(f"images must be at least {MIN_SIDE}x{MIN_SIDE}, got {width}x{height}")


def is_val(index: int, val_fraction: float) -> bool:
    """Whether image `index` belongs to the validation split.

    Each image adds `val_fraction` to a running count; an image goes to val when the count
    reaches a whole number on it: images 0, 5, 10, ... for 0.2. So val always holds the first
    image, and an image's split never depends on how many images follow it.
    """
    # The epsilon keeps 5 * 0.2 = 1.0000000000000002 from counting as past 1.
    before = math.ceil(index * val_fraction - 1e-9)
    after = math.ceil((index + 1) * val_fraction - 1e-9)
    return after > before


def write_dataset(
    out: str | Path,
    *,
    n: int,
    seed: int = 0,
    width: int = 640,
    height: int = 640,
    val_fraction: float = 0.2,
    surface: str | None = None,
    image_format: str = "jpg",
    overwrite: bool = False,
    progress: bool = False,
    defects: tuple[int, int] | None = None,
    references: bool = False,
    part: int | None = None,
) -> DatasetSummary:
    """Write `n` samples as a YOLO dataset under `out`: images/{train,val}, labels/{train,val}
    and data.yaml. Good parts get an empty label file, as YOLO expects. With `references`,
    each image's defect-free part goes to references/{train,val}/ under the image's name,
    where reference recipes look for it (formats/yolo.reference_path_for)."""
    if n < 1:
        raise ConfigError(f"n must be 1 or more, got {n}")
    if not 0 <= val_fraction < 1:
        raise ConfigError(f"val fraction must be in [0, 1), got {val_fraction}")
    if image_format not in IMAGE_FORMATS:
        raise ConfigError(f"unknown image format {image_format!r}; choose one of "
                          f"{', '.join(IMAGE_FORMATS)}")
    if surface is not None and surface not in SURFACES:
        raise ConfigError(f"unknown surface {surface!r}; choose one of {', '.join(SURFACES)}")
    _check_size(width, height)
    if defects is not None and not 1 <= defects[0] <= defects[1] <= 12:
        raise ConfigError(f"defects per part must be a range within 1-12, got {defects[0]}-{defects[1]}")
    root = Path(out).expanduser().resolve()
    _prepare(root, overwrite=overwrite)

    images = {"train": 0, "val": 0}
    boxes = dict.fromkeys(CLASS_NAMES.values(), 0)
    good = 0
    # One process: OpenCV already spreads its work over the cores, and worker processes were
    # measured no faster (200 images at 640x640 in about 11 s on 2 cores either way).
    for index in tqdm(range(n), desc="synth", unit="img", disable=not progress):
        sample = make_sample(sample_seed(seed, index), width=width, height=height,
                             surface=surface, defects=defects, reference=references, part=part)
        encoded = _encode(sample.image, image_format)
        label = label_text(sample.detections)
        split = "val" if is_val(index, val_fraction) else "train"
        stem = f"synth_{index:06d}"
        (root / "images" / split / f"{stem}.{image_format}").write_bytes(encoded)
        (root / "labels" / split / f"{stem}.txt").write_text(label, encoding="utf-8")
        if sample.reference is not None:
            (root / "references" / split).mkdir(parents=True, exist_ok=True)
            (root / "references" / split / f"{stem}.{image_format}").write_bytes(
                _encode(sample.reference, image_format))
        images[split] += 1
        good += not label
        for name in sample.detections.class_names:
            boxes[name] += 1

    data_yaml = root / "data.yaml"
    write_data_yaml(data_yaml, names=CLASS_NAMES, splits=["train", "val"], root=root)
    data_yaml.write_text(  # how to make the dataset again, above the YAML
        f"# Synthetic defects: qc synth --n {n} --seed {seed} --width {width} --height {height}"
        + (" --references" if references else "") + (f" --part {part}" if part is not None else "") + "\n"
        + data_yaml.read_text(encoding="utf-8"),
        encoding="utf-8",
    )
    return DatasetSummary(root=root, data_yaml=data_yaml, images=images, boxes=boxes, good=good)


def _encode(image: np.ndarray, image_format: str) -> bytes:
    params = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY] if image_format == "jpg" else []
    ok, encoded = cv2.imencode(f".{image_format}", image, params)
    if not ok:
        raise DatasetError(f"OpenCV could not encode a {image_format} image")
    return encoded.tobytes()


def _prepare(root: Path, *, overwrite: bool) -> None:
    if root.exists() and not root.is_dir():
        raise DatasetError(f"{root} is a file; give a folder to write the dataset into")
    ours = [root / "images", root / "labels", root / "references", root / "data.yaml"]
    present = [p for p in ours if p.exists()]
    if present and not overwrite:
        raise DatasetError(
            f"{root} already holds a dataset ({', '.join(p.name for p in present)}); "
            "choose another folder or pass --overwrite to replace it"
        )
    for path in present:  # only what this writer makes: never the rest of the folder
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
    for split in ("train", "val"):
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "labels" / split).mkdir(parents=True, exist_ok=True)
