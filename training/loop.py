"""One turn of the loop: labelled frames -> next dataset version -> fine-tuned candidate -> gate.

Example::

    from training.loop import LoopSettings, run_turn

    job = run_turn(LoopSettings(loop_recipe="recipes/synthetic-demo.yaml", loop_min_new=20))
    job.state, job.result["gate"], job.result["changed_verdicts"]

Steps, each recorded in the job row (inspection/store/jobs.py) with its outputs, so a turn
killed half-way continues from the last finished step when `qc loop` runs again:

1. pull      annotations from Label Studio (when configured), frames labelled on the review
             page and PASS frames as background images (as the sampling policy says) into the
             next dataset version; nothing new: the dataset's newest version is used as it is.
             Label Studio down: what the webhook recorded is pulled, and the turn goes on.
2. check     how many images the newest version has that the production model never saw
             (by image hash against the version named in its card); fewer than
             `loop_min_new` ends the turn as `skipped`.
3. train     fine-tune from the production model's weights (`name@vN`) with the production
             recipe (`loop_recipe`: the recipe file the production model was trained with;
             `loop_epochs` may shorten it for a fine-tune, and then replaces the recipe's
             `time_hours` too), on the new version. A model registered without its .pt
             (`qc models add model.onnx`) is not fine-tuned: the recipe's own model is trained
             on the new version instead, and the turn says so. Before training, everything the
             rest of the turn needs is checked at once (training/loop_check.py).
4. export    ONNX at the recipe's export size, registered as the next version with its
             weights, the recipe, the dataset version and the job id in its card.
5. evaluate  candidate and production on the model's frozen holdout (`qc models holdout`),
             which a new dataset version never changes.
6. gate      the promotion gate; promoted when it passes and `loop_auto_promote` is on, else
             left `waiting_approval` for `qc models promote` (or the API); the service's model
             watcher swaps a promoted model in without a failed request.

A turn is started by `qc loop` (the job row is made here, with who started it and where:
`created_by` user@host and `via` "cli" in its params, which the Loop page shows) or by the
service's `POST /v1/loop/run` or Loop page, which make the row themselves (`via` "api" or
"page") and start `qc loop --job ID` as a child in a session of its own (serving/turns.py):
`run_turn(job_id=...)` adopts that row.

The result holds per-class metrics before and after, and the labelled frames of this turn
whose verdict (under their station's current rules) changed from the production model to
the candidate.
"""

from __future__ import annotations

import json
import threading
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import Field

from inspection.data import versions
from inspection.errors import ConfigError, Conflict, DatasetError, NotFound
from inspection.models import promotion
from inspection.models.registry import Registry
from inspection.store.database import Database
from inspection.store.jobs import Job, JobKind, JobState, JobStore
from training.settings import TrainSettings

KIND = JobKind.LOOP
HEARTBEAT_S = 20.0


class LoopSettings(TrainSettings):
    loop_recipe: str = Field(default="", description="The production model's training recipe (YAML).")
    loop_min_new: int = Field(default=50, ge=1, description="New labelled images needed for a turn.")
    loop_epochs: int = Field(default=0, ge=0, description="Epochs of the fine-tune; 0: the recipe's.")
    loop_auto_promote: bool = Field(default=False, description="Promote when the gate passes; "
                                    "else the candidate waits for an engineer.")
    loop_split: str = Field(default="test", description="Split of the holdout the gate scores.")
    label_studio_url: str = ""  # as labeling.settings.LabelSettings: pull first when set


def run_turn(settings: LoopSettings | None = None, *, job_id: str | None = None, created_by: str | None = None,
             via: str | None = None, say: Callable[[str], None] = lambda message: None) -> Job:
    """Run (or resume) one turn; `job_id`: the running job the service created for it;
    `created_by` and `via` (where it was started: "cli") for a row made here."""
    settings = settings or LoopSettings()
    settings.ensure_dirs()
    db = Database.from_settings(settings)
    jobs = JobStore(db)
    params = {"model": settings.model_name, "min_new": settings.loop_min_new, "recipe": settings.loop_recipe,
              "epochs": settings.loop_epochs, "auto_promote": settings.loop_auto_promote}
    if via and not job_id:  # an adopted row keeps where the service says it came from
        params["via"] = via
    try:
        job = jobs.adopt(job_id, params=params) if job_id else jobs.start(KIND, params=params, created_by=created_by)
    except Exception:
        db.dispose()
        raise
    if job.progress.get("steps"):
        say(f"resuming job {job.id} after {', '.join(job.progress['steps'])}")
    stop = threading.Event()
    beat = threading.Thread(target=_heartbeat, args=(jobs, job.id, stop), daemon=True)
    beat.start()
    try:
        return _turn(settings, db, jobs, job, say)
    except Exception as error:  # noqa: BLE001 -- whatever broke, the job row must say so
        say(f"failed: {error}")
        return jobs.finish(job.id, JobState.FAILED, error=f"{type(error).__name__}: {error}",
                           result={"traceback": traceback.format_exc()[-4000:]})
    finally:
        stop.set()
        beat.join(5)
        db.dispose()


def _heartbeat(jobs: JobStore, job_id: str, stop: threading.Event) -> None:
    while not stop.wait(HEARTBEAT_S):
        jobs.heartbeat(job_id)


def _turn(settings: LoopSettings, db: Database, jobs: JobStore, job: Job, say) -> Job:
    registry = Registry(settings.models_dir)
    name = settings.model_name
    production = registry.production(name)

    def step(key: str, message: str, work: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        nonlocal job
        done = job.done(key)
        if done is not None:
            return done
        say(message)
        jobs.progress(job.id, step=key, message=message)
        outputs = work()
        job = jobs.progress(job.id, step=key, message=f"{key} done", outputs=outputs)
        return outputs

    def pull() -> dict[str, Any]:
        from labeling.bridge import Bridge
        from labeling.client import LabelStudioUnavailable

        bridge = Bridge(label_settings_for(settings), db=db)
        if not settings.label_studio_url:  # labels from review and PASS negatives need no Label Studio
            version = bridge.pull(fetch=False)
            return {"version": version.ref if version else None,
                    "note": "Label Studio not configured; labels from review only" if version else
                            "Label Studio not configured and nothing new from review; using the dataset as it is"}
        try:
            version = bridge.pull()
        except LabelStudioUnavailable as error:  # the webhook may have recorded annotations
            version = bridge.pull(fetch=False)
            return {"version": version.ref if version else None,
                    "note": f"{error}; pulled only what the webhook recorded"}
        return {"version": version.ref if version else None}

    step("pull", "pulling annotations from Label Studio", pull)
    trained_on = production.card.get("dataset_version")
    dataset = label_settings_for(settings).dataset_for(trained_on)  # where the bridge pulled into

    def check() -> dict[str, Any]:
        try:
            latest = versions.open_version(dataset, root=settings.datasets_dir)
        except DatasetError:
            return {"version": None, "new": 0, "inspections": [],
                    "note": f"dataset {dataset} has no version yet: push frames and pull their labels"}
        seen = set()
        if trained_on:
            try:
                seen = {e["sha256"] for e in versions.open_version(trained_on, root=settings.datasets_dir).entries}
            except DatasetError:
                seen = set()
        new = [e for e in latest.entries if e["sha256"] not in seen]
        return {"version": latest.ref, "new": len(new),
                "inspections": [e["lineage"]["inspection_id"] for e in new
                                if e.get("lineage", {}).get("inspection_id")]}

    checked = step("check", f"counting new labelled images in {dataset}", check)
    if checked["new"] < settings.loop_min_new:
        return jobs.finish(job.id, JobState.SKIPPED, result={
            "message": f"{checked['new']} new labelled images in {checked['version'] or dataset}, "
                       f"{settings.loop_min_new} needed (QC_LOOP_MIN_NEW)", **checked})
    fine_tune = production.weights_path is not None
    if job.done("train") is None:  # everything training needs, named at once (qc loop --check lists it all)
        from training.loop_check import require_training_needs

        require_training_needs(settings)
        if not fine_tune:
            say(f"{production.ref} has no .pt weights (registered with qc models add): training the recipe's "
                "model from scratch on the new version instead of fine-tuning it")

    def train() -> dict[str, Any]:
        from training.recipe import Recipe
        from training.trainer import Run
        from training.trainer import train as run_training

        recipe = _recipe(settings, production)
        start = production.ref if fine_tune else recipe.model  # ONNX-only: the recipe's own model
        overrides = {"model": start, "data": checked["version"], "name": f"loop-{job.id[-8:]}"}
        if settings.loop_epochs:
            # Exactly these epochs: a recipe's time budget (time_hours) would otherwise make
            # Ultralytics stretch the fine-tune to the whole budget of the first training.
            overrides["epochs"] = settings.loop_epochs
            overrides["time_hours"] = None
        chosen = Recipe.checked({**recipe.model_dump(), **overrides}, source=f"{settings.loop_recipe} for qc loop")
        folder = settings.runs_dir / f"loop-{job.id}"

        def on_epoch(epoch: int, epochs: int, metrics: dict[str, float]) -> None:
            shown = f", val mAP50 {metrics['metrics/mAP50(B)']:.3f}" if "metrics/mAP50(B)" in metrics else ""
            jobs.progress(job.id, step="train", message=f"fine-tuning: epoch {epoch}/{epochs}{shown}")

        if (folder / "dataset.json").is_file() and (folder / "train" / "weights" / "last.pt").is_file():
            run = run_training(chosen, settings=settings, resume=folder, progress=False, on_epoch=on_epoch)
        else:
            if folder.exists():
                import shutil

                shutil.rmtree(folder)
            run = run_training(chosen, settings=settings, run_folder=folder, progress=False, on_epoch=on_epoch)
        run = Run.open(run.folder)
        return {"run": str(run.folder), "metrics": run.metrics, "recipe": chosen.model_dump(mode="json"),
                "fine_tuned": fine_tune}

    trained = step("train", f"fine-tuning {production.ref} on {checked['version']}" if fine_tune else
                   f"training from the recipe on {checked['version']} ({production.ref} has no .pt weights)", train)

    def export() -> dict[str, Any]:
        from inspection.models.card import model_card
        from training.export import export_onnx
        from training.trainer import Run

        run = Run.open(trained["run"])
        imgsz = run.recipe.export_imgsz or run.recipe.imgsz
        path = export_onnx(run.best_weights, out_dir=run.folder / "export", imgsz=imgsz, lineage=run.lineage)
        origin = ({"fine_tuned_from": production.ref} if trained.get("fine_tuned", True)
                  else {"trained_from": trained["recipe"]["model"], "replaces": production.ref})
        card = model_card(path, source=f"qc loop job {job.id}", recipe=trained["recipe"],
                          loop_job=job.id, **origin)  # the lineage is in the file
        entry = registry.add(name, path, card=card, weights=run.best_weights)
        return {"candidate": entry.version}

    candidate = step("export", "exporting and registering the candidate", export)["candidate"]

    holdout = registry.holdout(name)
    if holdout is None:
        raise Conflict(f"model {name} has no frozen holdout; set one with qc models holdout {name} DATASET@VERSION")

    def evaluate() -> dict[str, Any]:
        from inspection.evaluate.scoring import gate_evaluation

        scores = {}
        for version in (production.version, candidate):
            entry = registry.get(name, version)
            evaluation = promotion.evaluation_on(entry, holdout)
            if evaluation is None:  # a good-only production scores 0 on every class (gate_evaluation)
                evaluation = gate_evaluation(entry.model_path, holdout, split=settings.loop_split, progress=False)
                registry.update_card(entry, evaluations={**entry.card.get("evaluations", {}), holdout: evaluation})
            scores[version] = evaluation
        return {"holdout": holdout, "before": _summary(scores[production.version]),
                "after": _summary(scores[candidate])}

    evaluated = step("evaluate", f"scoring {production.version} and {candidate} on the holdout {holdout}", evaluate)
    changed = step("verdicts", "re-judging this turn's labelled frames with both models",
                   lambda: {"changed": _changed_verdicts(settings, db, registry, name, production.version, candidate,
                                                         checked["inspections"])})["changed"]
    decision = promotion.check(registry, name, candidate)
    result = {"candidate": f"{name}@{candidate}", "production_before": production.ref, "dataset": checked["version"],
              "new_images": checked["new"], "run": trained["run"], **evaluated, "changed_verdicts": changed,
              **({} if trained.get("fine_tuned", True) else {"trained_from": trained["recipe"]["model"]}),
              "gate": decision.table() if decision else "no production model to compare with"}
    if decision is not None and not decision.accepted:
        return jobs.finish(job.id, JobState.REFUSED, result=result)
    if not settings.loop_auto_promote:
        result["next"] = f"qc models promote {name} {candidate}"
        return jobs.finish(job.id, JobState.WAITING, result=result)
    pointer = promotion.promote(registry, name, candidate, decision=decision)
    result["production"] = f"{name}@{pointer['version']}"
    return jobs.finish(job.id, JobState.PROMOTED, result=result)


def label_settings_for(settings: LoopSettings):
    """The labeling side's settings (QC_LABEL_*) for this turn's home and database."""
    from labeling.settings import LabelSettings

    return LabelSettings(home=settings.home, database_url=settings.database_url)


def _recipe(settings: LoopSettings, production):
    from training.recipe import Recipe

    if settings.loop_recipe:
        return Recipe.load(Path(settings.loop_recipe))
    if production.card.get("recipe"):
        return Recipe.checked(production.card["recipe"], source=f"the card of {production.ref}")
    raise ConfigError(f"{production.ref} was not trained by qc loop, so its card holds no recipe; set "
                      "QC_LOOP_RECIPE to the recipe file it was trained with")


def _summary(evaluation: dict[str, Any]) -> dict[str, Any]:
    summary = {"map50": evaluation.get("map50"), "map50_95": evaluation.get("map50_95"),
               "per_class": {name: {k: values.get(k) for k in ("ap50", "precision", "recall") if k in values}
                             for name, values in (evaluation.get("per_class") or {}).items()}}
    if evaluation.get("agnostic"):  # a good-only model: what it found, whatever the class
        summary["agnostic"] = _summary(evaluation["agnostic"])
    return summary


def _changed_verdicts(settings, db, registry, name, before, after, inspection_ids) -> list[dict[str, Any]]:
    """Labelled frames of this turn whose verdict differs between the two models."""
    from inspection.detect.detector import Detector
    from inspection.rules import decide
    from inspection.store.image_stores import open_image_store
    from inspection.store.records import RecordStore
    from inspection.store.references import StationReferences

    if not inspection_ids:
        return []
    store, images = RecordStore(db), open_image_store(settings)
    references = StationReferences(db)
    models = {v: Detector(registry.get(name, v).model_path, providers=["cpu"]) for v in (before, after)}
    with_reference = any(detector.needs_reference for detector in models.values())
    goldens: dict[tuple[str, int], Any] = {}
    changed = []
    for inspection_id in inspection_ids:
        try:
            record = store.inspection(inspection_id)
            if record.image_sha256 is None:
                continue
            data = images.read(record.image_sha256, record.image_format)
            # A reference model judges the frame against the golden part it was judged against
            # then (read once per golden part); a frame judged without one cannot be judged again.
            golden = None
            if with_reference and record.reference_version is not None:
                key = (record.station_id, record.reference_version)
                if key not in goldens:
                    goldens[key] = references.grey_image(*key, images)
                golden = goldens[key]
        except NotFound:
            continue
        if with_reference and golden is None:
            continue
        rules = store.station(record.station_id).rules
        verdicts = {}
        for version, detector in models.items():
            detections = detector.predict_bytes(data, conf=rules.lowest_conf,
                                                reference=golden if detector.needs_reference else None)
            verdicts[version] = decide(detections, rules).verdict.value
        if verdicts[before] != verdicts[after]:
            changed.append({"inspection": inspection_id, "station": record.station_id,
                            "before": verdicts[before], "after": verdicts[after]})
    return changed


def describe(job: Job) -> str:
    return json.dumps({"job": job.id, "state": job.state.value, "step": job.step,
                       "message": job.progress.get("message"), "error": job.error,
                       "started_by": job.created_by, "via": job.params.get("via", "cli"),
                       "result": job.result}, default=str, indent=1)
