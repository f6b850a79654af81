"""A frame's trail: from its verdict through reviews and labeling to the models that learnt
from it (inspection/store/trail.py).

Example::

    curl -H "Authorization: Bearer $REVIEWER_KEY" "$QC/v1/inspections/$ID/trail"
    # {"reviews": [...], "labeling": [{"state": "pulled", "dataset_ref": "line@v2", ...}],
    #  "datasets": [{"ref": "line@v2", ...}], "models": [{"ref": "pcb@v4", "production": true, ...}]}
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter

from serving.deps import Person, TrailsDep

router = APIRouter(prefix="/v1/inspections", tags=["lineage"])


@router.get("/{inspection_id}/trail")
async def inspection_trail(inspection_id: str, trails: TrailsDep, person: Person) -> dict[str, Any]:
    """Reviews, Label Studio task, dataset versions holding the frame, models trained on them."""
    return await asyncio.to_thread(trails.of, inspection_id)
