"""Decoding frames safely: read the size from the header first, refuse what is too large,
then decode, optionally at reduced size.

Why the header first: a 30000 x 30000 PNG is a few hundred kilobytes on the wire and 2.7 GB
after decoding (a decompression bomb). `probe` reads only the header and `decode` refuses the
frame before OpenCV allocates anything.

Why reduced decoding: libjpeg can decode at 1/2, 1/4 or 1/8 size almost for free, and a
2448 x 2048 camera frame is shrunk to the 640 network input anyway. Full decode takes 21.5 ms
here, 1/4 takes 5.9 ms (../shared/MEASURED.md); BENCHMARKS.md has what it does to mAP.

Why JPEGs go through simplejpeg (libjpeg-turbo's TurboJPEG API) with `strict=True`: libjpeg
decodes a damaged scan (a frame cut short with FFD9 appended, flipped bytes in the entropy
data, a header that claims more rows than the data holds) with only a *warning*, fills the
rest grey, and OpenCV's imdecode returns those pixels as if nothing happened: a verdict on
such a frame is a verdict on half a part, and it can be PASS. With `strict` every libjpeg
warning is an error, raised here as `DamagedImage` with libjpeg's own words ("Corrupt JPEG
data: premature end of data segment"). Its pixels are identical to OpenCV's at 1, 1/2, 1/4
and 1/8 scale, and it decodes a 2448 x 2048 frame in 14 vs 26 ms here (measured 2026-11-30 on
the 2-core EPYC, see BENCHMARKS.md). Flipped scan bytes that still form valid Huffman codes
change coefficients without any warning: no decoder can see those without a checksum (8
random byte flips were caught in 289 of 300 frames). Bytes after the end-of-image marker
(cameras that pad to a block size) are ignored, as libjpeg ignores them.

What strict libjpeg does not see, checked here before decoding: a progressive JPEG that ends
after any complete scan (cut, FFD9 appended) decodes without a warning to a blurred picture of
the whole part, so its scans must bring every coefficient of every component to full
precision; and a run-length BMP closed early by an end-of-bitmap code, whose missing rows
OpenCV fills with colour 0, must reach its last row (issue 25).

Example::

    >>> import cv2, numpy as np
    >>> ok, jpeg = cv2.imencode(".jpg", np.zeros((480, 640, 3), np.uint8))
    >>> probe(jpeg.tobytes())
    ImageHeader(format='jpeg', width=640, height=480)
"""

from __future__ import annotations

import math
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import simplejpeg

from inspection.errors import ConfigError, DamagedImage, ImageError, ImageTooLarge

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
    # DCT coefficients a progressive JPEG's decoder holds for the whole frame, whatever the
    # reduction (libjpeg buffers every scan's coefficients until the last); 0 for others.
    coefficients: int = field(default=0, compare=False)

    @property
    def pixels(self) -> int:
        return self.width * self.height

    def decoded_wh(self, reduce: int = 1) -> tuple[int, int]:
        """(width, height) of the pixels `decode(..., reduce=reduce)` returns: libjpeg rounds a
        scaled size up; other formats are decoded whole."""
        if self.format != "jpeg":
            return self.width, self.height
        return math.ceil(self.width / reduce), math.ceil(self.height / reduce)

    def decoded_pixels(self, reduce: int = 1) -> int:
        """The pixels decoding at `reduce` returns (3 bytes each)."""
        width, height = self.decoded_wh(reduce)
        return width * height

    def decode_cost(self, reduce: int = 1) -> int:
        """What decoding at `reduce` allocates at its peak, in units of 3 bytes (a BGR pixel):
        what a decode reserves from the service's memory bound (serving/decode_budget.py).
        Measured peak RSS over the decoded size (5000 x 5000, 2026-12-07, this 2-core EPYC):
        OpenCV's PNG and BMP decoders hold two copies of the pixels (6.0 bytes a pixel, 5.3 for
        a run-length BMP); libjpeg-turbo's baseline decode one (3.0); a progressive JPEG adds
        2 bytes for every DCT coefficient of the whole frame (6.0 for 4:2:0, 9.0 for 4:4:4 at
        full size; 81 MB for 5 MB of pixels at 1/4), which the pixel count alone missed
        (issue 25: a 1 KB BMP raised RSS by 572 MB where 300 MB were counted)."""
        pixels = self.decoded_pixels(reduce)
        if self.format != "jpeg":
            return 2 * pixels
        return pixels + math.ceil(2 * self.coefficients / 3)


def probe(data: bytes) -> ImageHeader:
    """Format and size from the first bytes of a JPEG, PNG or BMP, without decoding pixels.
    A header that declares a zero or negative size is an `ImageError`: there is nothing to judge."""
    header = _probe(data)
    if header.width <= 0 or header.height <= 0:
        raise ImageError(
            f"{header.format} header says {header.width}x{header.height} pixels: an image needs a "
            "width and height of at least 1; the camera or encoder wrote a broken header"
        )
    return header


def _probe(data: bytes) -> ImageHeader:
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


def _check_bmp_complete(data: bytes, header: ImageHeader) -> None:
    """A BMP must hold all the rows its header declares (OpenCV would fill the missing ones):
    an uncompressed one the bytes for them, a run-length encoded one codes that reach its last
    row before its end-of-bitmap (or before its data ends)."""
    if len(data) < 34 or struct.unpack("<I", data[14:18])[0] < 40:
        return
    offset = struct.unpack("<I", data[10:14])[0]
    bits, compression = struct.unpack("<HI", data[28:34])
    if (compression, bits) in ((1, 8), (2, 4)):  # BI_RLE8, BI_RLE4
        _check_rle_complete(data[offset:], header, nibbles=compression == 2)
        return
    if compression not in (0, 3) or bits == 0:  # BI_RGB, BI_BITFIELDS
        return
    stride = (header.width * bits + 31) // 32 * 4
    needed = offset + stride * header.height
    if len(data) < needed:
        raise DamagedImage(
            f"corrupt BMP (incomplete): its header declares {header.width}x{header.height} pixels "
            f"({needed:,} bytes) but the file has {len(data):,}; the upload was cut short"
        )


def _check_rle_complete(codes: bytes, header: ImageHeader, *, nibbles: bool) -> None:
    """Follow the run-length codes (runs, end-of-line, delta, absolute runs) without drawing
    a pixel: the rows they reach must be all the header declares. A frame cut and closed with
    an end-of-bitmap (00 01) decodes without complaint, its missing rows filled with colour 0."""
    row, pos, end = 0, 0, len(codes) - 1
    while pos < end:
        count, value = codes[pos], codes[pos + 1]
        pos += 2
        if count:  # a run of `count` pixels
            continue
        if value == 0:  # end of line
            row += 1
        elif value == 1:  # end of bitmap
            break
        elif value == 2:  # delta: right, then up
            if pos + 1 < len(codes):
                row += codes[pos + 1]
            pos += 2
        else:  # an absolute run of `value` pixels, padded to a 16-bit boundary
            size = (value + 1) // 2 if nibbles else value
            pos += size + (size & 1)
    if row + 1 < header.height:  # the last row may end with the bitmap, without its end-of-line
        raise DamagedImage(
            f"corrupt BMP (incomplete): its run-length codes reach {row + 1:,} of the {header.height:,} "
            "rows its header declares; the frame was cut short")


def _check_jpeg_scans(data: bytes) -> None:
    """Every component's every coefficient must reach its final precision in some scan.
    libjpeg (even strict) decodes a progressive JPEG that ends after any complete scan, an
    end-of-image marker appended, without a warning: the first scan alone is a blurred
    picture of the whole part, and a verdict on it can be PASS (issue 25). A sequential JPEG
    written one component per scan must have a scan for each."""
    progressive, components, scans = False, 0, 0
    final: dict[int, set[int]] = {}  # component id -> coefficients seen at full precision
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:  # entropy-coded data, up to the next marker
            found = _NEXT_MARKER.search(data, pos)
            if found is None:
                break
            pos = found.start()
            continue
        marker = data[pos + 1]
        if marker == 0xFF:
            pos += 1
            continue
        if marker == 0xD9:
            break
        if marker in (0x00, 0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # a stuffed byte, markers without a length
            pos += 2
            continue
        length = struct.unpack(">H", data[pos + 2: pos + 4])[0]
        segment = data[pos + 4: pos + 2 + length]
        if marker in _SOF_MARKERS and len(segment) >= 6:
            progressive = marker in (0xC2, 0xC6, 0xCA, 0xCE)
            components = segment[5]
            final = {segment[6 + 3 * i]: set() for i in range(components) if 6 + 3 * i < len(segment)}
        elif marker == 0xDA and len(segment) >= 1:
            scans += 1
            count = segment[0]
            ids = [segment[1 + 2 * i] for i in range(count) if 1 + 2 * i < len(segment)]
            tail = segment[1 + 2 * count: 4 + 2 * count]
            ss, se, al = (tail[0], tail[1], tail[2] & 0x0F) if len(tail) == 3 else (0, 63, 0)
            if not progressive:
                ss, se, al = 0, 63, 0
            for component in ids:
                if al == 0 and component in final:
                    final[component].update(range(ss, min(se, 63) + 1))
            if all(len(seen) == 64 for seen in final.values()):
                return  # complete (a baseline frame: at its first scan, without reading the scan data)
        pos += 2 + length
    missing = [c for c, seen in final.items() if len(seen) < 64]
    if components and not scans:
        raise DamagedImage("truncated JPEG: the file ends before its first scan (cut short in its header)")
    if components and missing:
        raise DamagedImage(
            f"incomplete JPEG: its scans end before {len(missing)} of {len(final)} colour components "
            "are complete (a progressive frame cut after a scan, an end marker appended)")


_NEXT_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")  # in scan data FF is followed by 00 or a restart
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
            progressive = marker in (0xC2, 0xC6, 0xCA, 0xCE)
            coefficients = _coefficients(data[pos + 4: pos + 2 + length], width, height) if progressive else 0
            return ImageHeader("jpeg", width, height, coefficients)
        pos += 2 + length
    raise ImageError("truncated JPEG: no frame header found; the file is cut short or corrupt")


def _coefficients(sof: bytes, width: int, height: int) -> int:
    """DCT coefficients of every component of a frame (its SOF segment: sampling factors),
    blocks padded to whole MCUs as libjpeg allocates them."""
    count = sof[5] if len(sof) > 5 else 0
    sampling = [(sof[7 + 3 * i] >> 4, sof[7 + 3 * i] & 0x0F) for i in range(count) if 7 + 3 * i < len(sof)]
    if not sampling:
        return 3 * 64 * math.ceil(width / 8) * math.ceil(height / 8)
    h_max, v_max = max(1, *(h for h, _ in sampling)), max(1, *(v for _, v in sampling))
    mcus_x, mcus_y = math.ceil(width / (8 * h_max)), math.ceil(height / (8 * v_max))
    return sum(64 * mcus_x * h * mcus_y * v for h, v in sampling)


def reduction_for(
    header: ImageHeader, *, input_hw: tuple[int, int], tolerance: float = 1.1
) -> int:
    """The largest JPEG decode reduction (1, 2, 4 or 8) that still feeds the network at full
    resolution, allowing up to `tolerance` upscaling in the letterbox. `input_hw` is the
    network's (height, width). Only JPEG decodes faster when reduced."""
    if header.format != "jpeg" or header.width <= 0 or header.height <= 0:
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

    Raises `ImageError` for unknown formats and broken headers, `ImageTooLarge` for frames over
    `max_pixels` (before decoding), and `DamagedImage` for corrupt or incomplete pixel data.
    """
    if reduce not in _REDUCED_FLAGS:
        raise ConfigError(f"JPEG decode reduction {reduce!r}: use 1, 2, 4 or 8 (QC_DECODE, --decode)")
    header = header or probe(data)
    if header.width <= 0 or header.height <= 0:
        raise ImageError(f"{header.format} header says {header.width}x{header.height} pixels")
    check_size(header, max_pixels=max_pixels)
    if header.format == "jpeg":
        return _decode_jpeg(data, header, reduce)
    if header.format == "png" and data.rfind(b"IEND") < 0:
        raise DamagedImage("truncated PNG: no IEND chunk; the upload was cut short")
    if header.format == "bmp":
        _check_bmp_complete(data, header)
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise DamagedImage(f"corrupt {header.format}: OpenCV could not decode the pixels")
    if image.shape[:2] != (header.height, header.width):
        raise DamagedImage(
            f"corrupt {header.format}: the header says {header.width}x{header.height}, the data "
            f"decodes to {image.shape[1]}x{image.shape[0]}"
        )
    return image


def _decode_jpeg(data: bytes, header: ImageHeader, reduce: int) -> np.ndarray:
    """libjpeg-turbo in strict mode: its warnings (corrupt or missing scan data) are errors;
    scans missing whole are found first (`_check_jpeg_scans`)."""
    width, height = header.decoded_wh(reduce)
    try:
        _check_jpeg_scans(data)
    except DamagedImage as damaged:
        raise DamagedImage(f"{damaged}; the frame is corrupt or incomplete, send it again from the camera") from None
    try:
        image = simplejpeg.decode_jpeg(data, colorspace="BGR", min_width=width, min_height=height,
                                       strict=True)
    except ValueError as error:
        reason = str(error).strip() or "libjpeg refused the data"
        if "Unsupported color conversion" in reason:  # CMYK/YCCK: TurboJPEG cannot make BGR
            return _decode_jpeg_cmyk(data, reduce)
        if b"\xff\xd9" not in data:
            reason = f"no end-of-image marker ({reason})"
        kind = "truncated" if "premature end" in reason.lower() or "end-of-image" in reason else "damaged"
        raise DamagedImage(f"{kind} JPEG: {reason}; the frame is corrupt or incomplete, "
                           "send it again from the camera") from error
    if image.shape[:2] != (height, width):  # the header walk and libjpeg disagree on the size
        raise DamagedImage(
            f"damaged JPEG: the frame header says {header.width}x{header.height}, libjpeg decoded "
            f"{image.shape[1]}x{image.shape[0]} at 1/{reduce}"
        )
    return image


def _decode_jpeg_cmyk(data: bytes, reduce: int) -> np.ndarray:
    """Print-shop CMYK JPEGs, which TurboJPEG cannot turn into BGR: OpenCV's libjpeg does (it
    does not report scan damage, so these get only the end-marker check)."""
    if b"\xff\xd9" not in data:
        raise DamagedImage("incomplete JPEG: no end-of-image marker; the upload was cut short")
    image = cv2.imdecode(np.frombuffer(data, np.uint8), _REDUCED_FLAGS[reduce])
    if image is None:
        raise DamagedImage("corrupt JPEG: OpenCV could not decode the pixels")
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
