"""Good frames as negatives: PASS frames of a station enter training as background images.

Example::

    from labeling.negatives import choose_negatives

    chosen = choose_negatives(pass_frames, wanted={"line1-cam2": 2}, embeddings=embeddings, seed=0)
    # [(record, {"picked_by": "k_center", "distance": 0.31}), ...]

A background image (an empty label file) teaches the next model what the line's good parts
look like, so it stops flagging their ordinary texture. How many: per station, at most the
policy's `negatives.share` of that station's new images in the version, i.e.
floor(share / (1 - share) x labelled new images) beside them (`negatives_wanted`). Which ones:
PASS frames with a stored image and no box at all (a box under the thresholds may be a real
defect the model was unsure of), never reviewed nor sent to Label Studio, not in the dataset
yet; spread by greedy k-center over the detector's embeddings (labeling/sampling/embeddings.py),
starting from the lowest hash of (seed, id); without embeddings (no production model), in the
order of that hash.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from inspection.rules import Verdict
from inspection.store.records import InspectionRecord
from labeling.sampling.clustering import k_center
from labeling.sampling.sampler import Embeddings
from labeling.sampling.strategies import draw

LABELLED_BY = "pass_negative"


def negatives_wanted(labelled_per_station: Mapping[str, int], share: float) -> dict[str, int]:
    """How many background images each station may add beside its labelled new images."""
    if share <= 0:
        return {}
    return {station: math.floor(share / (1 - share) * n + 1e-9) for station, n in labelled_per_station.items()}


def is_candidate(record: InspectionRecord) -> bool:
    return Verdict(record.verdict) is Verdict.PASS and not record.detections and record.image_sha256 is not None


def choose_negatives(frames: Sequence[InspectionRecord], *, wanted: Mapping[str, int],
                     embeddings: Embeddings | None, seed: int) -> list[tuple[InspectionRecord, dict[str, Any]]]:
    """Up to `wanted[station]` of `frames` per station (they must be `is_candidate`), each
    with how it was chosen."""
    by_station: dict[str, list[InspectionRecord]] = defaultdict(list)
    for record in frames:
        if wanted.get(record.station_id, 0) > 0:
            by_station[record.station_id].append(record)
    chosen: list[tuple[InspectionRecord, dict[str, Any]]] = []
    for station in sorted(by_station):
        ordered = sorted(by_station[station], key=lambda r: (draw(seed, r.id), r.id))
        n = wanted[station]
        vectors = embeddings.vectors(ordered) if embeddings is not None else {}
        embedded = [r for r in ordered if r.id in vectors]
        if embedded:
            spread = k_center(np.asarray([vectors[r.id] for r in embedded], dtype=np.float64), n)
            chosen += [(embedded[i], {"picked_by": "k_center", "distance": None if d is None else round(d, 4),
                                      "pool": len(embedded)}) for i, d in spread]
        else:
            chosen += [(r, {"picked_by": "hash", "draw": round(draw(seed, r.id), 6), "pool": len(ordered)})
                       for r in ordered[:n]]
    return chosen


def lineage(record: InspectionRecord, how: Mapping[str, Any]) -> dict[str, Any]:
    """A background image's lineage in its dataset entry."""
    return {"inspection_id": record.id, "station": record.station_id, "labelled_by": LABELLED_BY,
            "verdict": Verdict(record.verdict).value, "model": f"{record.model_name}@{record.model_version}",
            "recorded_at": record.created_at.isoformat(), "chosen": dict(how)}
