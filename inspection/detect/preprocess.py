"""Letterbox and tensor packing, identical to what Ultralytics does before a model runs.

Parity with Ultralytics matters: a model is trained and validated by Ultralytics, and served
by qc; any difference in how pixels reach the network shifts every score (tests/test_parity.py).
The arithmetic follows `ultralytics.data.augment.LetterBox` (INTER_LINEAR resize, padding
split as round(d - 0.1) / round(d + 0.1), grey 114) and `ultralytics.utils.ops.scale_boxes`
(per-axis gain from the rounded resized size).

Example::

    >>> import numpy as np
    >>> image = np.zeros((2048, 2448, 3), np.uint8)
    >>> padded, info = letterbox(image, new_shape=(640, 640))
    >>> padded.shape, info.resized
    ((640, 640, 3), (640, 535))
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from numpy.typing import DTypeLike

PAD_VALUE = 114


@dataclass(frozen=True)
class LetterboxInfo:
    """How an image was placed into the network input, to map boxes back.

    Attributes:
        original: (width, height) of the image the boxes must be expressed in. When the image was
            decoded at reduced size, this is the size before reduction.
        source: (width, height) of the array that was letterboxed.
        resized: (width, height) after resizing, before padding.
        pad: (left, top) padding in network pixels.
    """

    original: tuple[int, int]
    source: tuple[int, int]
    resized: tuple[int, int]
    pad: tuple[int, int]


def letterbox(
    image: np.ndarray,
    *,
    new_shape: tuple[int, int],
    stride: int = 32,
    auto: bool = False,
    original_size: tuple[int, int] | None = None,
) -> tuple[np.ndarray, LetterboxInfo]:
    """Resize keeping the aspect ratio, then pad to `new_shape` (height, width).

    `auto=True` pads only up to a multiple of `stride` (for models with dynamic height and
    width). `original_size` is the (width, height) the caller wants boxes in, when `image` is a
    reduced decode of a larger frame.
    """
    h0, w0 = image.shape[:2]
    new_h, new_w = new_shape
    ratio = min(new_h / h0, new_w / w0)
    resized_w, resized_h = max(round(w0 * ratio), 1), max(round(h0 * ratio), 1)
    dw, dh = new_w - resized_w, new_h - resized_h
    if auto:
        dw, dh = dw % stride, dh % stride
    dw, dh = dw / 2, dh / 2
    top, bottom = round(dh - 0.1), round(dh + 0.1)
    left, right = round(dw - 0.1), round(dw + 0.1)
    if (w0, h0) != (resized_w, resized_h):
        image = cv2.resize(image, (resized_w, resized_h), interpolation=cv2.INTER_LINEAR)
    if top or bottom or left or right:
        image = cv2.copyMakeBorder(
            image, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(PAD_VALUE,) * 3
        )
    info = LetterboxInfo(
        original=original_size or (w0, h0),
        source=(w0, h0),
        resized=(resized_w, resized_h),
        pad=(left, top),
    )
    return image, info


def to_tensor(
    images: list[np.ndarray], *, dtype: DTypeLike = np.float32, out: np.ndarray | None = None
) -> np.ndarray:
    """Stack letterboxed BGR uint8 images into an NCHW RGB tensor scaled to [0, 1].

    Channel planes are split by OpenCV and copied into place, then divided by 255 in place
    (Ultralytics divides too; OpenCV's blobFromImage multiplies by 1/255, which differs in the
    last bit): 0.8-3 ms for a 640x640 frame here, against 1.6-5 ms for a NumPy
    transpose-and-convert (bench/detector). `out`, a float32 NCHW array of the right shape,
    is filled instead of a new one, so that a caller assembling a batch copies nothing twice.
    """
    height, width = images[0].shape[:2]
    tensor = np.empty((len(images), 3, height, width), np.float32) if out is None else out
    for i, image in enumerate(images):
        blue, green, red = cv2.split(image)
        tensor[i, 0], tensor[i, 1], tensor[i, 2] = red, green, blue
    tensor /= 255.0
    return tensor if dtype == np.float32 else tensor.astype(dtype)


def scale_boxes(boxes: np.ndarray, info: LetterboxInfo) -> np.ndarray:
    """Map xyxy boxes from network input pixels to the original image, clipped to it.

    Follows `ultralytics.utils.ops.scale_boxes`: the gain is taken per axis from the rounded
    resized size, then a reduced decode is undone by the source-to-original ratio.
    """
    boxes = boxes.astype(np.float32, copy=True)
    source_w, source_h = info.source
    resized_w, resized_h = info.resized
    left, top = info.pad
    boxes[:, [0, 2]] -= left
    boxes[:, [1, 3]] -= top
    boxes[:, [0, 2]] /= resized_w / source_w
    boxes[:, [1, 3]] /= resized_h / source_h
    if info.original != info.source:
        boxes[:, [0, 2]] *= info.original[0] / source_w
        boxes[:, [1, 3]] *= info.original[1] / source_h
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, info.original[0])
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, info.original[1])
    return boxes
