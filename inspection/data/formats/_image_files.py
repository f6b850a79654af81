"""Image files on the way into and out of a dataset: finding, checking, naming, copying.

Example::

    images = find_images(Path("data/bottles"))        # sorted, hidden folders skipped
    width, height = image_wh(images[0])             # decodes: ImageError when corrupt
    names = unique_file_names(images)                 # a.png, a_1.jpg for a.png, a.jpg

Every image is decoded once on import, with the same decoder the line uses
(`inspection.detect.imaging`): a truncated JPEG or a corrupt PNG becomes a problem entry at import
rather than a crash, or grey pixels, in the middle of a training run.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path

from inspection.detect.imaging import decode
from inspection.errors import DatasetError, ImageError

# What the line's decoder reads. Others are still found, so that they are reported
# (convert them) rather than silently left out.
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp"})
_OTHER_IMAGE_SUFFIXES = frozenset({".tif", ".tiff", ".webp", ".gif", ".dng", ".heic"})


def is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES | _OTHER_IMAGE_SUFFIXES


def find_images(folder: Path) -> list[Path]:
    """Image files under `folder`, any depth, sorted; folders starting with a dot skipped."""
    return sorted(
        path
        for path in folder.rglob("*")
        if path.is_file() and is_image(path) and not _hidden(path.relative_to(folder))
    )


def _hidden(relative: Path) -> bool:
    return any(part.startswith(".") for part in relative.parts)


def image_wh(path: Path) -> tuple[int, int]:
    """(width, height) of the decoded image; `ImageError` when it cannot be decoded."""
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        raise ImageError(
            f"{path.suffix} images are not read by the line's decoder; convert it to PNG or JPEG"
        )
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ImageError(f"cannot read the file ({error.strerror})") from error
    pixels = decode(data)
    return int(pixels.shape[1]), int(pixels.shape[0])


def empty_output_dir(out: Path) -> Path:
    """Create `out`, refusing one that holds files: an export never mixes with old data."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DatasetError(f"{out} already exists and is not empty; choose a new or empty folder")
    out.mkdir(parents=True, exist_ok=True)
    return out


def unique_file_names(paths: Iterable[Path]) -> list[str]:
    """One file name per path, keeping the original name unless its stem was taken already.

    Stems, not names, must differ: a.png and a.jpg would share the label file a.txt.
    """
    taken: set[str] = set()
    names = []
    for path in paths:
        stem, n = path.stem, 0
        while stem.lower() in taken:
            n += 1
            stem = f"{path.stem}_{n}"
        taken.add(stem.lower())
        names.append(stem + path.suffix)
    return names


def copy_image(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    # copyfile, not copy2: a version's files are read-only, and an export should not be.
    shutil.copyfile(source, target)
