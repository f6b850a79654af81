"""Decoding frames safely: read the size from the header first, refuse what is too large,
then decode, optionally at reduced size.

Why the header first: a 30000 x 30000 PNG is a few hundred kilobytes on the wire and 2.7 GB
after decoding (a decompression bomb). `probe` reads only the header and `decode` refuses the
frame before OpenCV allocates anything.

Why reduced decoding: libjpeg can decode at 1/2, 1/4 or 1/8 size almost for free, and a
2448 x 2048 camera frame is shrunk to the 640 network input anyway. Full decode takes 21.5 ms
here, 1/4 takes 5.9 ms (../shared/MEASURED.md); BENCHMARKS.md has what it does to mAP.

Example::

    >>> import cv2, numpy as np
    >>> ok, jpeg = cv2.imencode(".jpg", np.zeros((480, 640, 3), np.uint8))
    >>> probe(jpeg.tobytes())
    ImageHeader(format='jpeg', width=640, height=480)
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from inspection.errors import ConfigError, ImageError, ImageTooLarge

# 100 megapixels: above any line camera we know of (a 2448 x 2048 frame is 5 MP).
DEFAULT_MAX_PIXELS = 100_000_000
CONTENT_TYPES = {"jpeg": "image/jpeg", "png": "image/png", "bmp": "image/bmp"}
_REDUCED_FLAGS = {
    1: cv2.IMREAD_COLOR,
    2: cv2.IMREAD_REDUCED_COLOR_2,
    4: cv2.IMREAD_REDUCED_COLOR_4,
    8: cv2.IMREAD_REDUCED_COLOR_8,
}


@dataclass(frozen=True)
class ImageHeader:
    format: str
    width: int
    height: int


def probe(data: bytes) -> ImageHeader:
    """Format and size from the first bytes of a JPEG, PNG or BMP, without decoding pixels."""
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return _probe_png(data)
    if data[:2] == b"\xff\xd8":
        return _probe_jpeg(data)
    if data[:2] == b"BM":
        return _probe_bmp(data)
    if not data:
        raise ImageError("empty image: the request or file has no bytes; send a JPEG, PNG or BMP")
    raise ImageError(
        f"not a JPEG, PNG or BMP image (first bytes {data[:8].hex(' ')}); "
        "send one of those formats"
    )


def _probe_png(data: bytes) -> ImageHeader:
    if len(data) < 24 or data[12:16] != b"IHDR":
        raise ImageError("truncated PNG: no IHDR header; the file is cut short or corrupt")
    width, height = struct.unpack(">II", data[16:24])
    return ImageHeader("png", width, height)


def _probe_bmp(data: bytes) -> ImageHeader:
    if len(data) < 26:
        raise ImageError("truncated BMP: the header is cut short")
    header_size = struct.unpack("<I", data[14:18])[0]
    if header_size == 12:  # OS/2 BITMAPCOREHEADER
        width, height = struct.unpack("<HH", data[18:22])
    else:
        width, height = struct.unpack("<ii", data[18:26])
    return ImageHeader("bmp", abs(width), abs(height))


_SOF_MARKERS = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _probe_jpeg(data: bytes) -> ImageHeader:
    # Walk the marker segments up to the first start-of-frame, which holds the size.
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            raise ImageError("corrupt JPEG: bad marker structure before the frame header")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # markers without a length
            pos += 2
            continue
        length = struct.unpack(">H", data[pos + 2 : pos + 4])[0]
        if marker in _SOF_MARKERS:
            if pos + 9 > len(data):
                break
            height, width = struct.unpack(">HH", data[pos + 5 : pos + 9])
            return ImageHeader("jpeg", width, height)
        pos += 2 + length
    raise ImageError("truncated JPEG: no frame header found; the file is cut short or corrupt")


def reduction_for(
    header: ImageHeader, *, input_hw: tuple[int, int], tolerance: float = 1.1
) -> int:
    """The largest JPEG decode reduction (1, 2, 4 or 8) that still feeds the network at full
    resolution, allowing up to `tolerance` upscaling in the letterbox. `input_hw` is the
    network's (height, width). Only JPEG decodes faster when reduced."""
    if header.format != "jpeg":
        return 1
    ratio = min(input_hw[1] / header.width, input_hw[0] / header.height)
    factor = 1
    for candidate in (2, 4, 8):
        if ratio * candidate <= tolerance:
            factor = candidate
    return factor


def decode(
    data: bytes,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    reduce: int = 1,
    header: ImageHeader | None = None,
) -> np.ndarray:
    """BGR uint8 pixels of a JPEG, PNG or BMP. `reduce` (1, 2, 4, 8) decodes JPEGs smaller.

    Raises `ImageError` for unknown formats, frames over `max_pixels`, and corrupt data.
    """
    if reduce not in _REDUCED_FLAGS:
        raise ConfigError(f"JPEG decode reduction {reduce!r}: use 1, 2, 4 or 8 (QC_DECODE, --decode)")
    header = header or probe(data)
    if header.width <= 0 or header.height <= 0:
        raise ImageError(f"{header.format} header says {header.width}x{header.height} pixels")
    check_size(header, max_pixels=max_pixels)
    _check_complete(data, header)
    flag = _REDUCED_FLAGS[reduce] if header.format == "jpeg" else cv2.IMREAD_COLOR
    image = cv2.imdecode(np.frombuffer(data, np.uint8), flag)
    if image is None:
        raise ImageError(f"corrupt {header.format}: OpenCV could not decode the pixels")
    return image


def check_size(header: ImageHeader, *, max_pixels: int) -> None:
    """`ImageTooLarge` for a frame over `max_pixels`: a decompression bomb is refused from its
    header, before a pixel is decoded."""
    if header.width * header.height > max_pixels:
        raise ImageTooLarge(
            f"image too large: {header.width}x{header.height} = "
            f"{header.width * header.height:,} pixels, above the limit of {max_pixels:,}; "
            "send a smaller frame or raise the limit"
        )


def _check_complete(data: bytes, header: ImageHeader) -> None:
    # libjpeg decodes a cut-off JPEG without error and fills the rest grey: a verdict on such a
    # frame would be a verdict on half a part. Demand the end marker (some cameras pad after it).
    tail = data[-64:]
    if header.format == "jpeg" and b"\xff\xd9" not in tail:
        raise ImageError("truncated JPEG: no end-of-image marker; the upload was cut short")
    if header.format == "png" and b"IEND" not in tail:
        raise ImageError("truncated PNG: no IEND chunk; the upload was cut short")


def read_file(path: str | Path, *, max_pixels: int = DEFAULT_MAX_PIXELS, reduce: int = 1) -> np.ndarray:
    """Pixels of an image file; `ImageError` names the file when it cannot be read."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ImageError(f"{path}: cannot read ({error.strerror})") from error
    try:
        return decode(data, max_pixels=max_pixels, reduce=reduce)
    except ImageError as error:
        raise ImageError(f"{path}: {error}") from error
