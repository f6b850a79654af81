"""Where a frame went after its verdict: the reviews of it, its Label Studio task, the dataset
versions that hold its labels, and the models trained on them.

Example::

    trails = Trails(db, datasets_root=settings.datasets_dir, registry=Registry(settings.models_dir))
    found = trails.of("01a22e...")      # the same as trail(db, "01a22e...", datasets_root=..., registry=...)
    found["reviews"][-1]["decision"], found["labeling"][0]["dataset_ref"], found["models"][0]["ref"]

How the steps are linked: a review names the inspection; the `label_tasks` row names the
inspection, the Label Studio task and annotation, and the version its annotation was pulled
into; each dataset version's manifest names the inspection in the image's lineage (later
versions of the same dataset carry the image on, with the same lineage); a model's card names
the dataset version it was trained on. Nothing here is guessed from file names or times.

It lives in `store/` (not `data/`) because it reads the stores, and `store/` is the layer that
may read dataset versions and the registry; `data/` reads no database.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from inspection.data import versions
from inspection.models.registry import Registry
from inspection.store.database import Database
from inspection.store.labels import LabelStore
from inspection.store.records import RecordStore
from inspection.store.reviews import ReviewStore


def trail(db: Database, inspection_id: str, *, datasets_root: Path, registry: Registry) -> dict[str, Any]:
    """The trail of one inspection (NotFound when it does not exist)."""
    record = RecordStore(db).inspection(inspection_id)
    reviews = [{"decision": r.decision.value, "reviewer": r.reviewer, "created_at": _time(r.created_at),
                "boxes": [b.to_json() for b in r.boxes], "note": r.note}
               for r in ReviewStore(db).history(inspection_id)]
    tasks = LabelStore(db).of_inspection(inspection_id)
    labeling = [{"project": t.project, "state": t.state.value, "reasons": t.reasons,
                 "labelstudio_task_id": t.task_id, "labelstudio_annotation_id": t.annotation_id,
                 "dataset_ref": t.dataset_ref} for t in tasks]
    datasets = []
    for name in sorted({versions.parse_ref(t.dataset_ref)[0] for t in tasks if t.dataset_ref}):
        for version in versions.list_versions(name, root=datasets_root):
            for entry in version.entries:
                if entry.get("lineage", {}).get("inspection_id") == inspection_id:
                    datasets.append({"ref": version.ref, "boxes": entry["boxes"], "split": entry["split"],
                                     "labelstudio_annotation_id": entry["lineage"].get("labelstudio_annotation_id")})
                    break
    holding = {d["ref"] for d in datasets}
    models = []
    for name in registry.names():
        production = registry.production_version(name)
        for model_version in registry.versions(name):
            card = registry.get(name, model_version, verify=False).card
            if card.get("dataset_version") in holding:
                models.append({"ref": f"{name}@{model_version}", "dataset_version": card["dataset_version"],
                               "production": model_version == production,
                               "fine_tuned_from": card.get("fine_tuned_from"),
                               "loop_job": card.get("loop_job")})
    return {"inspection": inspection_id, "station": record.station_id,
            "verdict": getattr(record.verdict, "value", record.verdict),
            "model": f"{record.model_name}@{record.model_version}", "reviews": reviews, "labeling": labeling,
            "datasets": datasets, "models": models}


class Trails:
    """Trails of the inspections of one database, dataset root and registry (the service holds one)."""

    def __init__(self, db: Database, *, datasets_root: Path, registry: Registry) -> None:
        self.db, self.datasets_root, self.registry = db, datasets_root, registry

    def of(self, inspection_id: str) -> dict[str, Any]:
        """The trail of one inspection (NotFound when it does not exist)."""
        return trail(self.db, inspection_id, datasets_root=self.datasets_root, registry=self.registry)


def _time(value) -> str | None:
    return value.isoformat(timespec="seconds") + "Z" if value is not None else None
