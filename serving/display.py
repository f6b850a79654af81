"""How big a stored frame is shown to people: the longest side drawn, and the JPEG decode
reduction that gets there cheaply (the image routes' `?boxes=true`, the anomaly maps).

Example::

    header = imaging.probe(data)
    image = imaging.decode(data, reduce=display_reduction(header))   # 1, 2, 4 or 8
    scale = min(1.0, DISPLAY_MAX_SIDE / max(image.shape[:2]))
"""

from __future__ import annotations

from inspection.detect import imaging

# Stored frames are drawn on for people at most this wide or high: a JPEG is decoded at 1/2,
# 1/4 or 1/8 to get there, so four viewers of one 100 MP frame no longer cost 2.4 GB (issue 9).
DISPLAY_MAX_SIDE = 2048


def display_reduction(header: imaging.ImageHeader) -> int:
    """The JPEG decode reduction that brings the longer side nearest DISPLAY_MAX_SIDE from above."""
    factor = 1
    for candidate in (2, 4, 8):
        if max(header.width, header.height) / candidate >= DISPLAY_MAX_SIDE:
            factor = candidate
    return factor if header.format == "jpeg" else 1
