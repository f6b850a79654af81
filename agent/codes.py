"""Part ids read from the part: a DataMatrix, QR or 1D code in the frame, with zxing-cpp.

Example::

    reader = CodeReader()
    reader.read(image)           # "A123-0042", or None when no code is found

zxing-cpp is the maintained C++ port of ZXing with wheels for every platform; it reads the
common industrial symbologies (DataMatrix, QR, Code 128, Code 39, EAN/UPC, ...) from a numpy
image without an extra copy. Read rate and time on generated codes at line sizes:
bench/agent/codes.py, figures in BENCHMARKS.md.
"""

from __future__ import annotations

import numpy as np


class CodeReader:
    def __init__(self, formats: str | None = None) -> None:
        import zxingcpp

        self._zxing = zxingcpp
        # The formats a part is marked with; fewer formats read faster and misread less.
        self.formats = zxingcpp.barcode_formats_from_str(formats) if formats else None

    def read(self, image: np.ndarray) -> str | None:
        """The first code's text (the largest when several), or None."""
        if self.formats is not None:
            found = self._zxing.read_barcodes(image, formats=self.formats)
        else:
            found = self._zxing.read_barcodes(image)
        found = [r for r in found if r.valid and r.text]
        if not found:
            return None
        def area(result) -> float:
            p = result.position
            return abs((p.bottom_right.x - p.top_left.x) * (p.bottom_right.y - p.top_left.y))
        return max(found, key=area).text[:128]
