"""The round trip: inspections out to Label Studio as tasks, annotations back as a dataset version.

Example::

    bridge = Bridge(LabelSettings())                 # the database, images and registry of QC_HOME
    bridge.setup(webhook_url="http://qc:8000/v1/hooks/label-studio")
    bridge.push(["0190c1...", "0190c2..."])          # queued durably, then sent in batches
    bridge.pull()                                    # new annotations -> line@v7, or None

push: every inspection is first a `label_tasks` row (unique per project), then claimed and sent
in batches of `label_push_batch`. Label Studio down: the batch goes back to the queue with a
backoff (inspection/store/labels.py) and `push` reports it; nothing is lost and nothing is sent
twice. Rows found `sending` (a push that died mid-request) are first looked up in Label Studio
by inspection id: found ones are marked pushed, the others queued again.

pull: asks Label Studio for the annotations of every task qc pushed (the webhook records them
as they are made; pulling catches what it missed), then writes the tasks labelled since the
last pull as ONE new version of the dataset: the previous version's images, with the new
frames added (a frame already there takes its new labels). Splits come from image hashes as
always, so the frozen holdout (an older version) is untouched. Each new image's lineage names
its inspection id, station, Label Studio project, task and annotation ids, and why it was
picked. The annotations pulled are also kept as a Label Studio JSON export under
$QC_HOME/labeling/pulls/, which the version's manifest names as its source.

The same version takes, as the sampling policy says (labeling/sampling/policy.yaml):
labels from review (labeling/reviewed.py: frames a reviewer decided on the review page,
never sent to Label Studio, lineage labelled_by "review" with the reviewer and time), and
good frames as negatives (labeling/negatives.py: PASS frames as background images, lineage
labelled_by "pass_negative"). Neither needs Label Studio: `pull(fetch=False)`, or `qc label
pull` with no QC_LABEL_STUDIO_URL, writes them alone.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from inspection.data import versions
from inspection.data.formats import LabelledImage, Problem, labelstudio
from inspection.detections import Detections
from inspection.errors import ConfigError, DatasetError, ModelError, NotFound
from inspection.models.registry import Registry
from inspection.rules import ANOMALY_CLASS
from inspection.store.database import Database
from inspection.store.image_stores import open_image_store
from inspection.store.images import ImageStore
from inspection.store.labels import LabelState, LabelStore
from inspection.store.records import InspectionRecord, RecordStore, utcnow
from inspection.store.reviews import ReviewStore
from labeling import negatives, reviewed
from labeling.client import LabelStudioUnavailable, Project, Studio
from labeling.config import check_label_config, label_config
from labeling.sampling.policy import SamplingPolicy
from labeling.sampling.sampler import Embeddings, Flips, Pick, sample
from labeling.sampling.strategies import SetLine
from labeling.settings import LabelSettings
from labeling.tasks import task_for

log = logging.getLogger(__name__)
SecondPass = TypeVar("SecondPass")  # what a second pass over stored frames makes: embeddings or mirror scores


@dataclass
class PushResult:
    queued: list[str] = field(default_factory=list)  # newly queued by this call
    pushed: dict[str, int] = field(default_factory=dict)  # inspection id -> task id
    recovered: dict[str, int] = field(default_factory=dict)  # found in Label Studio after a crash
    waiting: int = 0  # still queued (Label Studio down, or not due yet)
    error: str | None = None


def chosen_annotation(annotations: Iterable[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The latest submitted annotation (not cancelled), as `formats.labelstudio.read` picks it."""
    submitted = [a for a in annotations if not a.get("was_cancelled") and not a.get("skipped")]
    if not submitted:
        return None
    return max(submitted, key=lambda a: (str(a.get("updated_at") or a.get("created_at") or ""), a.get("id") or 0))


class Bridge:
    def __init__(self, settings: LabelSettings | None = None, *, studio: Studio | None = None,
                 db: Database | None = None) -> None:
        self.settings = settings or LabelSettings()
        self.settings.ensure_dirs()
        self.db = db or Database.from_settings(self.settings)
        self.labels = LabelStore(self.db)
        self.records = RecordStore(self.db)
        self.reviews = ReviewStore(self.db)
        self.images = open_image_store(self.settings)  # a folder or S3, as the service stores them
        self.registry = Registry(self.settings.models_dir)
        self._studio = studio

    @property
    def studio(self) -> Studio:
        if self._studio is None:
            self._studio = Studio.connect(self.settings)
        return self._studio

    @property
    def project_title(self) -> str:
        return self.settings.label_project

    def model_names(self) -> dict[int, str]:
        """The production model's classes: what the project's labels must match. A good-only
        model's one class, `anomaly`, is no defect class: while one is in production the
        project labels the part's real classes, QC_LABEL_CLASSES (ConfigError when unset)."""
        entry = self.registry.production(self.settings.model_name)
        names = entry.card.get("names")
        if not names:  # a card written by hand or by an older qc: the model file says
            from inspection.detect.detector import Detector

            names = Detector(entry.model_path, providers=["cpu"]).names
        found = {int(k): v for k, v in names.items()}
        if set(found.values()) != {ANOMALY_CLASS}:
            return found
        classes = self.settings.part_classes()
        if not classes:
            raise ConfigError(
                f"{entry.ref} is a good-only model (its only class is {ANOMALY_CLASS!r}): name the part's defect "
                "classes for Label Studio with QC_LABEL_CLASSES=scratch,dent,... (the classes its first "
                "supervised model will learn)")
        if ANOMALY_CLASS in classes or len(set(classes)) != len(classes):
            raise ConfigError(f"QC_LABEL_CLASSES={self.settings.label_classes!r}: name each real defect class "
                              f"once, and not {ANOMALY_CLASS!r}")
        return dict(enumerate(classes))

    def judges_against_reference(self) -> bool:
        """Whether the production model judges each frame against a golden image (its project
        then shows that image beside the frame, labeling/config.py)."""
        entry = self.registry.production(self.settings.model_name)
        model_input = entry.card.get("input")
        if isinstance(model_input, dict) and "reference" in model_input:
            return bool(model_input["reference"])
        from inspection.detect.detector import Detector  # an older card: the model file says

        return Detector(entry.model_path, providers=["cpu"]).needs_reference

    # -- setup -----------------------------------------------------------------------------

    def setup(self, *, update: bool = False, webhook_url: str | None = None) -> tuple[Project, list[str]]:
        """Create the project with the model's classes, or check an existing one (ConfigError
        naming each mismatch; `update` replaces its config instead). Returns the project and
        what was done, in words."""
        names = self.model_names()
        reference = self.judges_against_reference()
        wanted = label_config(names, reference=reference)
        done = []
        project = self.studio.find_project(self.project_title)
        if project is None:
            project = self.studio.create_project(self.project_title, wanted)
            done.append(f"created project {project.title!r} (id {project.id}) with classes "
                        f"{', '.join(names[i] for i in sorted(names))}")
        else:
            problems = check_label_config(project.label_config, names, reference=reference)
            if problems and not update:
                raise ConfigError(
                    f"Label Studio project {project.title!r} (id {project.id}) does not fit model "
                    f"{self.settings.model_name}: {'; '.join(problems)}. Pre-annotations would not show; "
                    "fix its Labeling Interface, or run qc label setup --update to replace its config")
            if problems:
                self.studio.set_label_config(project.id, wanted)
                project = dataclasses.replace(project, label_config=wanted)
                done.append(f"replaced the label config of project {project.id} ({'; '.join(problems)})")
            else:
                done.append(f"project {project.title!r} (id {project.id}) fits the model's classes")
        if webhook_url:
            if not self.settings.label_webhook_secret:
                raise ConfigError("a webhook needs a shared secret: set QC_LABEL_WEBHOOK_SECRET here "
                                  "and in the service's environment")
            added = self.studio.ensure_webhook(project.id, webhook_url, self.settings.label_webhook_secret)
            done.append(f"{'added' if added else 'kept'} the webhook to {webhook_url}")
        return project, done

    def project(self) -> Project:
        project = self.studio.find_project(self.project_title)
        if project is None:
            raise NotFound(f"Label Studio at {self.studio.url} has no project {self.project_title!r}; "
                           "create it with qc label setup")
        return project

    # -- sample ----------------------------------------------------------------------------

    def sample(self, policy: SamplingPolicy | None = None, *, queue: bool = False) -> list[Pick]:
        """What the active-learning sampler picks now (labeling/sampling/) among the frames
        never sent to this project (nor labelled by review, unless the policy asks for a second
        pass), judged against the dataset the production model learnt from (its rare classes;
        none when that dataset is not here), with the production model's embeddings and holdout
        AP when a strategy needs them; with `queue`, the picks are also queued, each with its
        reasons, to be sent by the next push."""
        policy = policy or self.policy()
        try:
            training = versions.open_version(self.dataset_name(), root=self.settings.datasets_dir)
        except DatasetError:
            training = None
        exclude = self.labels.known()
        if not policy.review_labels.second_pass:
            exclude |= {r.inspection_id for r in self.reviews.decided() if r.decision in policy.labels_from_review}
        needs = [s.name for s in policy.strategies if isinstance(s, SetLine) and s.needs_embeddings]
        needs_flips = [s.name for s in policy.strategies if isinstance(s, SetLine) and s.needs_flips]
        embeddings = self.embeddings(required_by=", ".join(needs)) if needs else None
        flips = self.flips(required_by=", ".join(needs_flips)) if needs_flips else None
        picks = sample(self.db, policy, training=training, exclude=exclude, embeddings=embeddings, flips=flips,
                       class_ap=self.class_ap())
        if queue and picks:
            self.enqueue([p.inspection_id for p in picks], {p.inspection_id: p.reasons for p in picks})
        return picks

    def policy(self) -> SamplingPolicy:
        """The sampling policy of QC_LABEL_POLICY, else the shipped one (ConfigError names a
        file that is missing or wrong)."""
        return SamplingPolicy.load(self.settings.label_policy or None)

    def embeddings(self, *, required_by: str = "") -> Embeddings | None:
        """The production model's embeddings of stored frames (labeling/sampling/embeddings.py);
        None without a production model (a warning names the lines in `required_by` that will
        then pick nothing)."""
        from labeling.sampling.embeddings import DetectorEmbeddings

        return self._second_pass(DetectorEmbeddings, "embeddings", required_by)

    def flips(self, *, required_by: str = "") -> Flips | None:
        """The production model's disagreement with itself on each stored frame and its mirror
        (labeling/sampling/flips.py); None without a production model, as `embeddings`."""
        from labeling.sampling.flips import FlipConsistency

        return self._second_pass(FlipConsistency, "passes over each frame and its mirror", required_by)

    def _second_pass(self, make: Callable[..., SecondPass], what: str, required_by: str) -> SecondPass | None:
        """`make(production model file, images, references=...)`, or None when there is no
        production model or it cannot make one (a good-only model): said with a warning naming
        the lines in `required_by`, which then pick nothing and pass their share on."""
        from inspection.store.references import StationReferences

        try:
            entry = self.registry.production(self.settings.model_name)
            return make(entry.model_path, self.images, references=StationReferences(self.records.db))
        except (NotFound, ModelError) as error:
            if required_by:  # the sampler says so too
                log.warning("strategy %s needs the production model's %s: %s", required_by, what, error)
            return None

    def class_ap(self) -> dict[str, float]:
        """The production model's AP50 per class on its frozen holdout ({} when not evaluated)."""
        try:
            entry = self.registry.production(self.settings.model_name)
        except NotFound:
            return {}
        holdout = self.registry.holdout(self.settings.model_name)
        evaluation = (entry.card.get("evaluations") or {}).get(holdout) if holdout else None
        per_class = (evaluation or {}).get("per_class") or {}
        return {name: float(v["ap50"]) for name, v in per_class.items()
                if isinstance(v, dict) and v.get("ap50") is not None}

    # -- push ------------------------------------------------------------------------------

    def enqueue(self, inspection_ids: Sequence[str],
                reasons: Mapping[str, Sequence[Mapping[str, Any]]] | None = None) -> list[str]:
        """Queue inspections (each must exist and have its image stored); returns the new ones."""
        missing = []
        for inspection_id in inspection_ids:
            record = self.records.inspection(inspection_id)  # NotFound names it
            if not record.image_sha256:
                missing.append(inspection_id)
        if missing:
            raise NotFound(f"inspections {', '.join(missing)} have no stored image (a PASS frame "
                           "outside QC_PASS_SAMPLE_RATE), so they cannot be labelled")
        return self.labels.enqueue(self.project_title, inspection_ids, reasons=reasons)

    def push(self, inspection_ids: Sequence[str] = (), *,
             reasons: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
             wait_s: float = 0.0) -> PushResult:
        """Queue `inspection_ids`, then send what is due. With `wait_s`, keep retrying (after
        each backoff) until the queue is empty or the time is up."""
        result = PushResult(queued=self.enqueue(inspection_ids, reasons) if inspection_ids else [])
        deadline = time.monotonic() + wait_s
        while True:
            try:
                self._send_due(result)
                result.error = None
            except LabelStudioUnavailable as error:
                result.error = str(error)
            queued = self.labels.tasks(self.project_title, states=[LabelState.QUEUED])
            result.waiting = len(queued)
            if not queued or time.monotonic() >= deadline:
                return result
            due = min(t.next_attempt_at for t in queued)
            pause = max((due - utcnow()).total_seconds(), 0.2)
            time.sleep(min(pause, max(deadline - time.monotonic(), 0.0)))

    def _send_due(self, result: PushResult) -> None:
        project = self.project()
        self._recover(project, result)
        while True:
            batch = self.labels.claim(self.project_title, limit=self.settings.label_push_batch)
            if not batch:
                return
            ids = [row.inspection_id for row in batch]
            try:
                tasks = self._tasks(batch)
                task_ids = self.studio.import_tasks(project.id, tasks)
            except LabelStudioUnavailable as error:
                self.labels.failed(self.project_title, ids, str(error))
                raise
            except Exception as error:
                self.labels.failed(self.project_title, ids, f"{type(error).__name__}: {error}")
                raise
            self.labels.pushed(self.project_title, dict(zip(ids, task_ids, strict=True)))
            result.pushed.update(zip(ids, task_ids, strict=True))

    def _recover(self, project: Project, result: PushResult) -> None:
        stuck = self.labels.in_flight(self.project_title)
        if not stuck:
            return
        existing = self.studio.task_ids_by_inspection(project.id)
        found = {row.inspection_id: existing[row.inspection_id] for row in stuck if row.inspection_id in existing}
        self.labels.pushed(self.project_title, found)
        self.labels.requeue(self.project_title, [r.inspection_id for r in stuck if r.inspection_id not in found])
        result.recovered.update(found)

    def _tasks(self, batch) -> list[dict[str, Any]]:
        ids = [row.inspection_id for row in batch]
        reviews = self.reviews.latest(ids)
        with_reference = self.judges_against_reference()
        tasks = []
        for row in batch:
            record = self.records.inspection(row.inspection_id)
            if record.image_sha256 is None:
                raise NotFound(f"inspection {row.inspection_id} has no stored image to label")
            image = self.images.read(record.image_sha256, record.image_format)
            reference = self._reference_image(record) if with_reference and record.reference_version else None
            tasks.append(task_for(record, image, review=reviews.get(row.inspection_id), reasons=row.reasons,
                                  with_reference=with_reference, reference=reference))
        return tasks

    def _reference_image(self, record: InspectionRecord) -> tuple[bytes, str | None]:
        """The bytes and format of the golden image `record` was judged against."""
        from inspection.store.references import StationReferences

        assert record.reference_version is not None
        reference = StationReferences(self.records.db).get(record.station_id, record.reference_version)
        return self.images.read(reference.image_sha256, reference.image_format), reference.image_format

    # -- pull ------------------------------------------------------------------------------

    def record_annotation(self, task_id: int, annotation: Mapping[str, Any]) -> bool:
        """What the webhook and pull share: the chosen annotation of one of our tasks."""
        return self.labels.annotated(
            self.project_title, task_id, annotation_id=int(annotation["id"]),
            result=list(annotation.get("result") or []),
            annotated_at=str(annotation.get("updated_at") or annotation.get("created_at") or ""))

    def fetch_annotations(self) -> int:
        """Ask Label Studio for the annotations of every task qc pushed; returns how many
        were new or changed."""
        changed = 0
        for row in self.labels.tasks(self.project_title, states=[LabelState.PUSHED, LabelState.LABELLED,
                                                                 LabelState.PULLED]):
            if row.task_id is None:  # pushed rows have their task; a queued one has none yet
                continue
            annotation = chosen_annotation(self.studio.annotations(row.task_id))
            if annotation is not None:
                changed += self.record_annotation(row.task_id, annotation)
        return changed

    def dataset_name(self) -> str:
        """The dataset pulled labels extend (`LabelSettings.dataset_for`)."""
        try:
            trained_on = self.registry.production(self.settings.model_name).card.get("dataset_version")
        except NotFound:
            trained_on = None
        return self.settings.dataset_for(trained_on)

    def pull(self, *, fetch: bool | None = None,
             policy: SamplingPolicy | None = None) -> versions.DatasetVersion | None:
        """New labels as the next version of the dataset; None when nothing new. The labels:
        Label Studio's annotations (fetched first when `fetch`, by default when Label Studio is
        configured), the frames labelled by review and PASS frames as background images, as
        `policy` says (the shipped policy by default)."""
        policy = policy or self.policy()
        if fetch is None:
            fetch = bool(self.settings.label_studio_url)
        if fetch:
            self.fetch_annotations()
        labelled = self.labels.tasks(self.project_title, states=[LabelState.LABELLED])
        name = self.dataset_name()
        try:
            previous = versions.open_version(name, root=self.settings.datasets_dir)
        except DatasetError:
            previous = None
        old_entries = previous.entries if previous else []
        by_review = reviewed.labelled_reviews(
            self.db, policy.labels_from_review, skip=self.labels.known(),
            already={e["lineage"]["inspection_id"]: e["lineage"].get("review_id") for e in old_entries
                     if e.get("lineage", {}).get("labelled_by") == reviewed.LABELLED_BY})
        if not labelled and not by_review:
            return None
        names = previous.names if previous else self.model_names()
        fresh: list[LabelledImage] = []
        problems: list[Problem] = []
        export = self._write_export(labelled) if labelled else None
        if export is not None:
            fresh, problems = self._from_studio(export, labelled, names)
        from_studio = [i.lineage["inspection_id"] for i in fresh]
        folder = self.settings.home / "labeling" / "pulls"
        for item in reviewed.reviewed_images(self.db, names=names, decisions=policy.labels_from_review,
                                             image_file=lambda r: self._image_file(r, folder),
                                             reviews=by_review):
            if isinstance(item, Problem):
                problems.append(item)
            else:
                fresh.append(self._with_reference(item, folder))
        if not fresh and export is not None:
            shown = "; ".join(str(p) for p in problems[:3])
            raise DatasetError(f"none of the {len(labelled)} labelled tasks could be read ({shown}); see {export}")
        if not fresh:  # reviews only, none usable (a class the dataset lacks, an image gone): nothing new
            return None
        background = self._negatives(fresh, old_entries, policy, folder)
        new_hashes = {self.records.inspection(item.lineage["inspection_id"]).image_sha256
                      for item in [*fresh, *background]}
        kept = [image for image in (previous.images() if previous else [])
                if image.lineage.get("sha256") not in new_hashes]
        split = (previous.manifest.get("split") if previous else None) or {}
        source: dict[str, Any] = (
            {"format": "labelstudio", "path": str(export), "labelstudio_project": self.project_title}
            if export is not None else {"format": "review", "path": None})
        version = versions.write_version(
            [*kept, *fresh, *background, *problems], name=name,
            source={**source, "images": str(self.settings.images_dir), "base": previous.ref if previous else None,
                    "new_images": len(fresh) + len(background),
                    "labelled_by": {"labelstudio": len(from_studio), "review": len(fresh) - len(from_studio),
                                    "pass_negative": len(background)}},
            names=names, root=self.settings.datasets_dir,
            test_fraction=split.get("test_fraction", versions.DEFAULT_TEST_FRACTION),
            val_fraction=split.get("val_fraction", versions.DEFAULT_VAL_FRACTION),
        )
        if from_studio:
            self.labels.mark_pulled(self.project_title, from_studio, version.ref)
        return version

    def _from_studio(self, export: Path, labelled, names: dict[int, str]) -> tuple[list[LabelledImage], list[Problem]]:
        """The Label Studio export's frames, each with its lineage (and reference)."""
        fresh: list[LabelledImage] = []
        problems: list[Problem] = []
        by_id = {row.inspection_id: row for row in labelled}
        for item in labelstudio.read(export, images=self.settings.images_dir, names=[names[i] for i in sorted(names)]):
            if isinstance(item, Problem):
                problems.append(item)
                continue
            row = by_id[item.lineage["inspection_id"]]
            record = self.records.inspection(row.inspection_id)
            lineage = {**item.lineage, "station": record.station_id, "labelstudio_project": self.project_title,
                       "model": f"{record.model_name}@{record.model_version}", "reasons": row.reasons,
                       "labelstudio_annotated_at": row.annotated_at, "labelled_by": "labelstudio"}
            fresh.append(self._with_reference(dataclasses.replace(item, lineage=lineage), export.parent))
        return fresh, problems

    def _with_reference(self, item: LabelledImage, folder: Path) -> LabelledImage:
        """A frame judged against its station's reference keeps that reference in the dataset:
        a reference recipe trains on the pair as the service composed it."""
        record = self.records.inspection(item.lineage["inspection_id"])
        if not record.reference_version:
            return item
        reference = self._reference_file(record, folder)
        return dataclasses.replace(item, lineage={**item.lineage, "reference_version": record.reference_version},
                                   reference=reference)

    def _negatives(self, fresh: list[LabelledImage], old_entries: list[dict[str, Any]], policy: SamplingPolicy,
                   folder: Path) -> list[LabelledImage]:
        """PASS frames as background images beside this pull's labelled frames (labeling/negatives.py)."""
        per_station: dict[str, int] = {}
        for item in fresh:
            station = item.lineage.get("station")
            if station:
                per_station[station] = per_station.get(station, 0) + 1
        wanted = negatives.negatives_wanted(per_station, policy.negatives.share)
        if not any(wanted.values()):
            return []
        taken = {e["sha256"] for e in old_entries} | {
            self.records.inspection(i.lineage["inspection_id"]).image_sha256 for i in fresh}
        excluded = self.labels.known() | {r.inspection_id for r in self.reviews.decided()}
        since = utcnow() - timedelta(days=policy.window_days)
        frames = [r for r in self.records.with_images_since(since)
                  if negatives.is_candidate(r) and r.id not in excluded and r.image_sha256 not in taken
                  and r.station_id in wanted]
        if not frames:
            return []
        chosen = negatives.choose_negatives(frames, wanted=wanted, embeddings=self.embeddings(),
                                            seed=policy.negatives.seed)
        background = []
        for record, how in chosen:
            item = LabelledImage(path=self._image_file(record, folder),
                                 detections=Detections.empty(names=None, image_wh=(record.width, record.height)),
                                 lineage=negatives.lineage(record, how))
            background.append(self._with_reference(item, folder))
        return background

    def _write_export(self, rows) -> Path:
        """The labelled tasks as a Label Studio JSON export, images named by their stored path."""
        folder = self.settings.home / "labeling" / "pulls"
        folder.mkdir(parents=True, exist_ok=True)
        tasks = []
        for row in rows:
            record = self.records.inspection(row.inspection_id)
            tasks.append({
                "id": row.task_id,
                "data": {"image": str(self._image_file(record, folder)), "inspection_id": row.inspection_id},
                "annotations": [{"id": row.annotation_id, "result": row.annotation or [],
                                 "updated_at": row.annotated_at}],
            })
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S-%f")
        path = folder / f"{self.project_title}-{stamp}.json"
        path.write_text(json.dumps(tasks, indent=1), encoding="utf-8")
        return path

    def _image_file(self, record: InspectionRecord, folder: Path) -> Path:
        """A file holding the frame, for the Label Studio JSON importer: the stored file itself in
        a folder store, or a copy made here from an S3 store."""
        if record.image_sha256 is None:
            raise NotFound(f"inspection {record.id} has no stored image")
        return self._stored_file(record.image_sha256, record.image_format or "jpeg", folder / "images")

    def _stored_file(self, sha: str, image_format: str, folder: Path) -> Path:
        """The stored image `sha` as a file: itself in a folder store, else a copy in `folder`."""
        if isinstance(self.images, ImageStore):
            return self.images.path(sha)
        target = folder / f"{sha}.{image_format}"
        if not target.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(self.images.read(sha, image_format))
        return target

    def _reference_file(self, record: InspectionRecord, folder: Path) -> Path:
        """A file holding the reference image `record` was judged against."""
        from inspection.store.references import StationReferences

        assert record.reference_version is not None
        reference = StationReferences(self.records.db).get(record.station_id, record.reference_version)
        return self._stored_file(reference.image_sha256, reference.image_format, folder / "references")

    # -- status ----------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        rows = self.labels.tasks(self.project_title)
        counts = self.labels.counts(self.project_title)
        queued = [r for r in rows if r.state is LabelState.QUEUED]
        errors = [r for r in queued if r.last_error]
        return {
            "project": self.project_title,
            "label_studio": self.settings.label_studio_url or None,
            **counts,
            "next_attempt": min((r.next_attempt_at for r in queued), default=None),
            "last_error": errors[-1].last_error if errors else None,
            "versions": sorted({r.dataset_ref for r in rows if r.dataset_ref}),
        }
