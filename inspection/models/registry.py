"""The model registry: versioned models (ONNX, or good-only `.qcgood`) with their cards, and an
atomic production pointer.

Training writes it, serving reads it. On disk, under `$QC_HOME/models`::

    <name>/
      v1/ model.onnx  card.json
      v2/ model.onnx  card.json  weights.pt   (weights only when trained here: fine-tuning)
      v3/ model.qcgood card.json               (a good-only model: inspection/detect/goodonly.py)
      production.json   {"version": "v2", "history": ["v1", "v2"], ...}
      holdout.json      {"data": "pcb@v3"}  the frozen holdout the promotion gate uses

Example::

    from inspection.models.registry import Registry

    registry = Registry(settings.models_dir)
    entry = registry.add("pcb", Path("model.onnx"), card={"source": "qc export"})
    registry.set_production("pcb", entry.version)
    registry.production("pcb").model_path

Every write goes to a temporary name first and is renamed into place (`os.replace` is atomic
on POSIX), so a crash mid-way leaves either the old state or the new one, never a half
version or a dangling production pointer. The card keeps the sha256 of model.onnx; a version
whose file does not match its card is refused as corrupt. A Registry hashes a file once and
remembers the result while the file's inode, size, mtime and ctime stay the same, so loading,
gating and promoting one version read it once.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inspection.durable import fsync_file, fsync_folder, write_json_atomic
from inspection.errors import Conflict, NotFound, RegistryError

_VERSION = re.compile(r"^v(\d+)$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
GOODONLY_FILE = "model.qcgood"  # a version's good-only model, in place of model.onnx


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class ModelVersion:
    name: str
    version: str
    folder: Path
    card: dict[str, Any]

    @property
    def model_path(self) -> Path:
        """model.onnx, or model.qcgood for a good-only version (`Detector` loads either)."""
        goodonly = self.folder / GOODONLY_FILE
        return goodonly if goodonly.is_file() else self.folder / "model.onnx"

    @property
    def goodonly(self) -> bool:
        """A good-only model: boxes of one class, `anomaly`, from a golden part and good frames."""
        return self.model_path.name == GOODONLY_FILE

    @property
    def weights_path(self) -> Path | None:
        path = self.folder / "weights.pt"
        return path if path.is_file() else None

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"


class Registry:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._hashes: dict[tuple[int, int, int, int, int], str] = {}  # see _sha256

    def _sha256(self, path: Path) -> str:
        """sha256_file, remembered while the file is unchanged (same inode, size, mtime, ctime:
        a write or a replacement changes one of them)."""
        stat = path.stat()  # before reading: a change while hashing gives a stale key, not a wrong hash
        key = (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)
        if key not in self._hashes:
            if len(self._hashes) >= 1024:
                self._hashes.clear()
            self._hashes[key] = sha256_file(path)
        return self._hashes[key]

    # -- reading ---------------------------------------------------------------------------

    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and _NAME.match(p.name))

    def versions(self, name: str) -> list[str]:
        folder = self.root / name
        if not folder.is_dir():
            return []
        found = [p.name for p in folder.iterdir() if p.is_dir() and _VERSION.match(p.name)]
        return sorted(found, key=lambda v: int(v[1:]))

    def get(self, name: str, version: str, *, verify: bool = True) -> ModelVersion:
        folder = self.root / name / version
        if not folder.is_dir():
            known = ", ".join(self.versions(name)) or "none"
            raise NotFound(f"model {name}@{version} does not exist (versions: {known}); see qc models list")
        card_path = folder / "card.json"
        model_path = ModelVersion(name=name, version=version, folder=folder, card={}).model_path
        if not model_path.is_file() or not card_path.is_file():
            missing = "model.onnx" if not model_path.is_file() else "card.json"
            raise RegistryError(
                f"{folder} is incomplete (no {missing}); remove the folder and add the model again"
            )
        try:
            card = json.loads(card_path.read_text())
        except json.JSONDecodeError as error:
            raise RegistryError(f"{card_path} is corrupt ({error}); remove {folder} and add the model again") from error
        if verify and card.get("sha256") and self._sha256(model_path) != card["sha256"]:
            raise RegistryError(
                f"{model_path} does not match the sha256 in its card (changed or corrupt); "
                f"remove {folder} and add the model again"
            )
        return ModelVersion(name=name, version=version, folder=folder, card=card)

    def resolve(self, ref: str) -> ModelVersion:
        """"name@v3", "name@production" or "name" (= production)."""
        name, _, version = ref.partition("@")
        if not version or version == "production":
            return self.production(name)
        if version == "latest":
            versions = self.versions(name)
            if not versions:
                raise NotFound(f"model {name} has no versions; add one with qc models add")
            version = versions[-1]
        return self.get(name, version)

    def pointer(self, name: str) -> dict[str, Any] | None:
        path = self.root / name / "production.json"
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise RegistryError(f"{path} is corrupt ({error}); run qc models promote {name} VERSION") from error

    def production(self, name: str) -> ModelVersion:
        pointer = self.pointer(name)
        if not pointer:
            raise NotFound(
                f"model {name} has no production version; promote one with qc models promote {name} VERSION"
            )
        return self.get(name, pointer["version"])

    def production_version(self, name: str) -> str | None:
        pointer = self.pointer(name)
        return pointer["version"] if pointer else None

    # -- writing ---------------------------------------------------------------------------

    def add(
        self,
        name: str,
        model_file: Path,
        *,
        card: dict[str, Any] | None = None,
        weights: Path | None = None,
    ) -> ModelVersion:
        """Copy `model_file` in as the next version of `name` with its card (a `.qcgood` file
        is kept as model.qcgood: a good-only version)."""
        if not _NAME.match(name):
            raise RegistryError(f"model name {name!r}: use letters, digits, '.', '_' or '-'")
        model_file = Path(model_file)
        if not model_file.is_file():
            raise NotFound(f"{model_file}: no such model file")
        folder = self.root / name
        folder.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=folder, prefix=".adding-"))
        try:
            stored = GOODONLY_FILE if model_file.suffix.lower() == ".qcgood" else "model.onnx"
            copied = [(model_file, staging / stored)]
            if weights is not None:
                copied.append((Path(weights), staging / "weights.pt"))
            for source, target in copied:
                shutil.copy2(source, target)
                fsync_file(target)  # durable before the rename makes the version visible
            while True:  # claim the next number; another writer may race us
                versions = self.versions(name)
                version = f"v{int(versions[-1][1:]) + 1 if versions else 1}"
                full_card = {
                    **(card or {}),
                    "name": name,
                    "version": version,
                    "sha256": self._sha256(staging / stored),  # the rename keeps the inode
                    "added_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                }
                write_json_atomic(staging / "card.json", full_card)
                try:
                    os.rename(staging, folder / version)
                    fsync_folder(folder)
                    break
                except OSError:
                    if not (folder / version).exists():
                        raise
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
        return self.get(name, version)

    def update_card(self, entry: ModelVersion, **values: Any) -> ModelVersion:
        """Merge values into a version's card (evaluations, export checks)."""
        card = {**entry.card, **values}
        write_json_atomic(entry.folder / "card.json", card)
        return ModelVersion(entry.name, entry.version, entry.folder, card)

    def set_production(self, name: str, version: str, *, reason: str = "promote") -> dict[str, Any]:
        """Point production at `version`, atomically. The registry checks the version is whole
        (file and card match); that it *loads* is checked by the caller before this is called
        (inspection/models/promotion.py). Promoting the production version again changes
        nothing: no second history entry for one version."""
        self.get(name, version)  # refuses missing, incomplete or corrupt versions
        old = self.pointer(name) or {}
        if old.get("version") == version:
            return old
        return self._write_pointer(name, version, old, [*old.get("history", []), version], reason)

    def _write_pointer(
        self, name: str, version: str, old: dict[str, Any], history: list[str], reason: str
    ) -> dict[str, Any]:
        pointer = {
            "version": version,
            "previous": old.get("version"),
            "history": history[-50:],
            "changed_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "reason": reason,
        }
        write_json_atomic(self.root / name / "production.json", pointer)
        return pointer

    def rollback_target(self, name: str, *, loadable: Callable[[ModelVersion], None] | None = None) -> str:
        """The version a rollback would return to: the newest earlier production version that
        is whole and, given `loadable` (which raises for a version that cannot load), loads.
        Versions skipped are named in the error when none is left."""
        pointer = self.pointer(name)
        if not pointer:
            raise NotFound(f"model {name} has no production version to roll back")
        earlier = list(dict.fromkeys(reversed([v for v in pointer.get("history", []) if v != pointer["version"]])))
        skipped = []
        for version in earlier:
            try:
                entry = self.get(name, version)
                if loadable is not None:
                    loadable(entry)
                return version
            except Exception as error:  # noqa: BLE001 - whatever makes a version unusable
                skipped.append(f"{version}: {error}")
        if not earlier:
            raise Conflict(f"model {name}: no earlier production version to roll back to")
        raise Conflict(f"model {name}: no earlier production version loads ({'; '.join(skipped)}); "
                       f"add a working model and promote it")

    def rollback(self, name: str, *, loadable: Callable[[ModelVersion], None] | None = None,
                 target: str | None = None) -> dict[str, Any]:
        """Production back to the newest earlier production version that loads (see
        `rollback_target`), or to `target` when the caller found it already; the history
        loses the entries after it."""
        target = target or self.rollback_target(name, loadable=loadable)
        self.get(name, target)
        old = self.pointer(name) or {}
        history = list(old.get("history", []))
        cut = len(history) - 1 - history[::-1].index(target) if target in history else len(history)
        return self._write_pointer(name, target, old, [*history[:cut], target], "rollback")

    def holdout(self, name: str) -> str | None:
        path = self.root / name / "holdout.json"
        if not path.is_file():
            return None
        fix = f"set the holdout again with qc models holdout {name} DATA"
        try:
            data = json.loads(path.read_text())["data"]
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            problem = f"no {error}" if isinstance(error, KeyError) else str(error)
            raise RegistryError(f"{path} is corrupt ({problem}); {fix}") from error
        if not isinstance(data, str) or not data:
            raise RegistryError(f"{path} is corrupt (data is {data!r}); {fix}")
        return data

    def set_holdout(self, name: str, data: str) -> None:
        write_json_atomic(self.root / name / "holdout.json", {"data": data})
