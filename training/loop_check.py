"""What a loop turn needs, every piece in one answer: `qc loop --check` and the Loop page.

Example::

    from training.loop import LoopSettings
    from training.loop_check import check_loop

    report = check_loop(LoopSettings())   # reads the registry, datasets and settings; tries Label Studio
    report.ready                          # False while a turn could not make a candidate
    for need in report.missing:
        print(need.says, "->", need.fix)  # e.g. "no frozen holdout" -> "qc models holdout default DATASET@VERSION"

Each `Need` is one prerequisite (`Prerequisite`): met, missing (a turn would stop on it), or a
note (a turn runs, but differently from what one may expect: no Label Studio, or no .pt
weights, so the model is trained from its recipe rather than fine-tuned). A missing one
carries the command that fixes it. The Loop page runs `qc loop --check --json` as a child in
the service's environment (serving/turns.py), the environment a turn started there runs in.

A turn checks the same things before it trains (`require_training_needs`), so a turn that
has new labelled images stops once, naming everything it lacks, not once per missing piece.
"""

from __future__ import annotations

import importlib.util
from dataclasses import asdict, dataclass
from enum import StrEnum
from pathlib import Path

from inspection.data import versions
from inspection.errors import ConfigError, DatasetError, NotFound, QCError
from inspection.models.registry import ModelVersion, Registry
from training.loop import LoopSettings, label_settings_for

PROBE_TIMEOUT_S = 3.0  # the page waits for this at most; a turn's own pull waits QC_LABEL_TIMEOUT_S


class Prerequisite(StrEnum):
    TRAINING = "training"  # torch and Ultralytics (the train extra) where the turn runs
    MODEL = "model"  # a production model to improve on
    RECIPE = "recipe"  # how it was trained
    WEIGHTS = "weights"  # its .pt, to fine-tune (else trained from the recipe)
    HOLDOUT = "holdout"  # the frozen holdout the gate scores on
    LABEL_STUDIO = "label_studio"  # where labels come from (optional)
    DATASET = "dataset"  # the dataset the labels extend
    NEW_IMAGES = "new_images"  # enough labelled images the model never saw


class State(StrEnum):
    MET = "met"
    MISSING = "missing"  # a turn would stop (or be skipped) on it
    NOTE = "note"  # a turn runs without it, differently


@dataclass(frozen=True)
class Need:
    item: Prerequisite
    state: State
    says: str
    fix: str = ""


@dataclass(frozen=True)
class LoopCheck:
    needs: list[Need]

    @property
    def ready(self) -> bool:
        return not self.missing

    @property
    def missing(self) -> list[Need]:
        return [need for need in self.needs if need.state is State.MISSING]

    def to_json(self) -> dict:
        return {"ready": self.ready, "needs": [asdict(need) for need in self.needs]}

    @classmethod
    def from_json(cls, data: dict) -> LoopCheck:
        return cls([Need(Prerequisite(n["item"]), State(n["state"]), n["says"], n.get("fix", ""))
                    for n in data["needs"]])

    def text(self) -> str:
        marks = {State.MET: "ok     ", State.MISSING: "MISSING", State.NOTE: "note   "}
        lines = []
        for need in self.needs:
            lines.append(f"{marks[need.state]} {need.item.value}: {need.says}")
            if need.fix and need.state is not State.MET:
                lines.append(f"        fix: {need.fix}")
        count = len(self.missing)
        lines.append("ready: a turn can run (qc loop)" if self.ready else
                     f"not ready: {count} missing piece{'s' * (count != 1)}; fix them, then qc loop --check again")
        return "\n".join(lines)


def check_loop(settings: LoopSettings, *, probe: bool = True) -> LoopCheck:
    """Every prerequisite of a turn, met or not; `probe` tries Label Studio when configured."""
    registry = Registry(settings.models_dir)
    name = settings.model_name
    production, problem = _production(registry, name)
    needs = [_training(), _model(name, production, problem)]
    recipe, recipe_need = _recipe(settings, production)
    needs += [recipe_need, _weights(name, production, recipe), _holdout(settings, registry, name),
              _label_studio(settings, probe=probe)]
    needs += _dataset(settings, production)
    return LoopCheck(needs)


def require_training_needs(settings: LoopSettings) -> None:
    """ConfigError naming every missing piece a turn needs from training on (the turn calls it
    once it knows there is something to learn)."""
    before_training = {Prerequisite.TRAINING, Prerequisite.MODEL, Prerequisite.RECIPE, Prerequisite.HOLDOUT}
    lacking = [n for n in check_loop(settings, probe=False).missing if n.item in before_training]
    if lacking:
        raise ConfigError("the turn cannot train: " + "; ".join(f"{n.says} (fix: {n.fix})" for n in lacking))


# -- one function per prerequisite ---------------------------------------------------------


def _production(registry: Registry, name: str) -> tuple[ModelVersion | None, str]:
    """The production model, or None and why (none promoted; a damaged registry folder)."""
    try:
        return registry.production(name), ""
    except NotFound:
        return None, f"model {name} has no production version to improve on (QC_MODEL_NAME)"
    except QCError as error:  # a corrupt card or pointer: its message names the fix
        return None, str(error)


def _training() -> Need:
    lacking = [module for module in ("torch", "ultralytics") if importlib.util.find_spec(module) is None]
    if lacking:
        return Need(Prerequisite.TRAINING, State.MISSING,
                    f"{' and '.join(lacking)} not installed in this Python environment (the one that runs the "
                    "turn; for the Loop page, the service's)", 'pip install "qc[train]"')
    return Need(Prerequisite.TRAINING, State.MET, "torch and Ultralytics installed")


def _model(name: str, production: ModelVersion | None, problem: str) -> Need:
    if production is None:
        return Need(Prerequisite.MODEL, State.MISSING, problem,
                    f"qc models add model.onnx --name {name} --weights best.pt --promote")
    return Need(Prerequisite.MODEL, State.MET, f"production model {production.ref}")


def _recipe(settings: LoopSettings, production: ModelVersion | None):
    from training.recipe import Recipe

    fix = ("export QC_LOOP_RECIPE=recipes/deeppcb-reference.yaml (the recipe the production model was "
           "trained with; recipes/ holds the project's)")
    if settings.loop_recipe:
        try:
            recipe = Recipe.load(Path(settings.loop_recipe))
        except ConfigError as error:
            return None, Need(Prerequisite.RECIPE, State.MISSING, f"QC_LOOP_RECIPE: {error}", fix)
        return recipe, Need(Prerequisite.RECIPE, State.MET, f"recipe {settings.loop_recipe} (QC_LOOP_RECIPE)")
    if production is not None and production.card.get("recipe"):
        try:
            recipe = Recipe.checked(production.card["recipe"], source=f"the card of {production.ref}")
        except ConfigError as error:
            return None, Need(Prerequisite.RECIPE, State.MISSING, str(error), fix)
        return recipe, Need(Prerequisite.RECIPE, State.MET, f"the recipe in the card of {production.ref}")
    whose = f"{production.ref} was not made by qc loop, so its card holds no recipe" if production else \
        "no recipe: QC_LOOP_RECIPE is not set"
    return None, Need(Prerequisite.RECIPE, State.MISSING, f"{whose}; the turn trains with it", fix)


def _weights(name: str, production: ModelVersion | None, recipe) -> Need:
    if production is None:
        return Need(Prerequisite.WEIGHTS, State.NOTE, "no production model, so no weights to fine-tune yet")
    if production.weights_path is not None:
        return Need(Prerequisite.WEIGHTS, State.MET, f"fine-tunes the .pt weights of {production.ref}")
    start = f"the recipe's model ({recipe.model})" if recipe is not None else "the recipe's model"
    return Need(Prerequisite.WEIGHTS, State.NOTE,
                f"{production.ref} was registered without its .pt weights: the turn trains {start} from the "
                "recipe on the new dataset version instead of fine-tuning (slower; needs the recipe's epochs)",
                f"to fine-tune instead: qc models add model.onnx --name {name} --weights best.pt --promote")


def _holdout(settings: LoopSettings, registry: Registry, name: str) -> Need:
    fix = (f"qc models holdout {name} DATASET@VERSION (frames the model never learnt from: e.g. qc dataset "
           f"import DIR --name holdout, then qc models holdout {name} holdout@v1)")
    try:
        holdout = registry.holdout(name)
    except QCError as error:
        return Need(Prerequisite.HOLDOUT, State.MISSING, str(error), fix)
    if holdout is None:
        return Need(Prerequisite.HOLDOUT, State.MISSING,
                    f"model {name} has no frozen holdout for the gate to score candidate and production on", fix)
    if "@" in holdout:  # a dataset version; a data.yaml path is checked when scored
        try:
            versions.open_version(holdout, root=settings.datasets_dir)
        except DatasetError as error:
            return Need(Prerequisite.HOLDOUT, State.MISSING, f"holdout {holdout}: {error}", fix)
    return Need(Prerequisite.HOLDOUT, State.MET, f"frozen holdout {holdout}")


def _label_studio(settings: LoopSettings, *, probe: bool) -> Need:
    from labeling.settings import LabelSettings

    labels = LabelSettings(home=settings.home)
    if not labels.label_studio_url:
        return Need(Prerequisite.LABEL_STUDIO, State.NOTE,
                    "Label Studio is not configured: the turn trains on the dataset's newest version as it is, "
                    "pulling nothing", "export QC_LABEL_STUDIO_URL=<its base URL> "
                    "QC_LABEL_STUDIO_TOKEN=<its API token>, then qc label setup")
    where = f"Label Studio at {labels.label_studio_url}"
    if not labels.label_studio_token:
        return Need(Prerequisite.LABEL_STUDIO, State.MISSING, f"{where}: QC_LABEL_STUDIO_TOKEN is not set",
                    "export QC_LABEL_STUDIO_TOKEN=<a legacy API token> (Account & Settings in Label Studio)")
    if importlib.util.find_spec("label_studio_sdk") is None:
        return Need(Prerequisite.LABEL_STUDIO, State.MISSING, f"{where}: label-studio-sdk is not installed",
                    'pip install "qc[label]"')
    if not probe:
        return Need(Prerequisite.LABEL_STUDIO, State.MET, f"{where} (configured; not tried)")
    from labeling.client import LabelStudioUnavailable, Studio

    try:
        project = Studio(labels.label_studio_url, labels.label_studio_token,
                         timeout_s=PROBE_TIMEOUT_S).find_project(labels.label_project)
    except LabelStudioUnavailable as error:
        return Need(Prerequisite.LABEL_STUDIO, State.NOTE,
                    f"{error}; a turn now pulls only what the webhook recorded",
                    "start Label Studio, or check QC_LABEL_STUDIO_URL")
    except QCError as error:  # a refused token names its variable
        return Need(Prerequisite.LABEL_STUDIO, State.MISSING, str(error), "export QC_LABEL_STUDIO_TOKEN=<a token>")
    if project is None:
        return Need(Prerequisite.LABEL_STUDIO, State.MISSING,
                    f"{where} has no project {labels.label_project!r} (QC_LABEL_PROJECT)",
                    "qc label setup --webhook-url <this service's URL>/v1/hooks/label-studio")
    return Need(Prerequisite.LABEL_STUDIO, State.MET, f"{where}, project {labels.label_project!r}")


def _dataset(settings: LoopSettings, production: ModelVersion | None) -> list[Need]:
    trained_on = production.card.get("dataset_version") if production else None
    name = label_settings_for(settings).dataset_for(trained_on)
    try:
        latest = versions.open_version(name, root=settings.datasets_dir)
    except DatasetError:
        return [Need(Prerequisite.DATASET, State.MISSING,
                     f"dataset {name} has no version yet (QC_LABEL_DATASET; {name!r} is what qc label pull writes)",
                     "qc label push --sample, label the tasks in Label Studio, then qc label pull "
                     f"(or qc dataset import DIR --name {name})")]
    seen: set[str] = set()
    if trained_on:
        try:
            seen = {e["sha256"] for e in versions.open_version(trained_on, root=settings.datasets_dir).entries}
        except DatasetError:
            seen = set()
    new = sum(1 for entry in latest.entries if entry["sha256"] not in seen)
    since = f"not in {trained_on}, which the production model learnt from" if trained_on else \
        "(the production model's card names no dataset, so every image counts as new)"
    counted = f"{new} labelled images in {latest.ref} {since}; {settings.loop_min_new} needed (QC_LOOP_MIN_NEW)"
    enough = Need(Prerequisite.NEW_IMAGES, State.MET, counted) if new >= settings.loop_min_new else Need(
        Prerequisite.NEW_IMAGES, State.MISSING, f"{counted}; a turn now would be skipped",
        f"label more frames (qc label push --sample, then qc label pull), or qc loop --min-new {max(new, 1)}")
    return [Need(Prerequisite.DATASET, State.MET, f"dataset {name}, newest version {latest.ref}"), enough]

