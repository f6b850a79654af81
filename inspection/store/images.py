"""Content-addressed image files: `<root>/<ab>/<cd>/<sha256>.<ext>`.

The same frame posted twice is stored once. A file is written to a temporary name, fsynced
and renamed, and its folder fsynced, before the record that names it is committed: a record
never points at a missing or half-written image, even after a power cut.

Group commit (serving/committer.py) stores a group's images with `put_many`: each file is
written and fsynced, and each folder they went into is fsynced once, not once per file.

Example::

    images = ImageStore(settings.images_dir)
    sha = images.put(jpeg_bytes, "jpeg")
    images.read(sha) == images.path(sha).read_bytes() == jpeg_bytes
    shas = images.put_many([(jpeg_bytes, "jpeg"), (png_bytes, "png")])  # an OSError for a failed one


`ImageStorage` is what the service needs of any store: this folder (the default, or a folder
shared by replicas) or S3-compatible object storage (`inspection/store/image_store_s3.py`),
chosen by QC_IMAGE_STORE (`inspection/store/image_stores.py`).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Protocol

from inspection.durable import fsync_file, fsync_folder
from inspection.errors import NotFound

EXTENSIONS = {"jpeg": ".jpg", "png": ".png", "bmp": ".bmp"}


class ImageStoreUnavailable(OSError):
    """The store cannot be reached or refused a write: nothing was recorded, retry later (503)."""


class ImageStorage(Protocol):
    def put(self, data: bytes, image_format: str) -> str:
        """Store durably (before any record names it); the sha256 that names it."""
        ...

    def put_many(self, items: list[tuple[bytes, str]]) -> list[str | OSError]:
        """Each (bytes, image format) stored durably, for a group commit: the sha256 of each,
        or the OSError that stopped that one alone."""
        ...

    def read(self, sha: str, image_format: str | None = None) -> bytes:
        """The stored bytes; NotFound when not stored."""
        ...


class ImageStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _folder(self, sha: str) -> Path:
        return self.root / sha[:2] / sha[2:4]

    def put(self, data: bytes, image_format: str) -> str:
        [stored] = self.put_many([(data, image_format)])
        if isinstance(stored, Exception):
            raise stored
        return stored

    def put_many(self, items: list[tuple[bytes, str]]) -> list[str | OSError]:
        """Store each (bytes, image format); on return every file and its folder entry is on
        stable storage. Each item gets its sha256, or the OSError that stopped it alone.

        In phases, so that the group shares its flushes: all files are written to temporary
        names, then fsynced (on ext4 the first fsync's journal commit carries the others'
        data, and theirs find little left to do), then renamed, then each folder that gained
        an entry is fsynced once (made folders' parents too). A file is renamed only after its
        own fsync, so a name never points at half an image, even after a power cut."""
        results: list[str | OSError] = []
        staged: dict[str, tuple[Path, Path, list[Path]]] = {}  # sha -> (temp, target, folders)
        for data, image_format in items:
            sha = hashlib.sha256(data).hexdigest()
            target = self._folder(sha) / f"{sha}{EXTENSIONS.get(image_format, '.bin')}"
            if sha not in staged and not target.exists():  # the same frame twice is stored once
                try:
                    staged[sha] = _write_temp(target, data)
                except OSError as error:
                    results.append(error)
                    continue
            results.append(sha)
        failed: dict[str, OSError] = {}
        for sha, (temp, _, _) in staged.items():
            try:
                fsync_file(temp)
            except OSError as error:
                failed[sha] = error
        to_sync: dict[Path, set[str]] = {}  # folder -> the shas whose entries it holds
        for sha, (temp, target, made) in staged.items():
            try:
                if sha in failed:
                    raise failed[sha]
                os.replace(temp, target)
            except OSError as error:
                failed[sha] = error
                with contextlib.suppress(OSError):
                    os.unlink(temp)
                continue
            for folder in [*(f.parent for f in made), target.parent]:
                to_sync.setdefault(folder, set()).add(sha)
        for folder, shas in to_sync.items():
            try:
                fsync_folder(folder)
            except OSError as error:
                failed.update(dict.fromkeys(shas, error))
        return [failed.get(r, r) if isinstance(r, str) else r for r in results]

    def path(self, sha: str) -> Path:
        folder = self._folder(sha)
        for ext in EXTENSIONS.values():
            candidate = folder / f"{sha}{ext}"
            if candidate.exists():
                return candidate
        raise NotFound(f"image {sha} is not stored (PASS frames are kept only at the sample rate)")

    def read(self, sha: str, image_format: str | None = None) -> bytes:
        return self.path(sha).read_bytes()

def _write_temp(target: Path, data: bytes) -> tuple[Path, Path, list[Path]]:
    """`data` in a temporary file beside `target` (not yet fsynced); returns (temp, target,
    the folders made for it, whose parents must be fsynced too)."""
    made = [f for f in (target.parent.parent, target.parent) if not f.exists()]
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=target.parent, prefix=".incoming-")
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
    except BaseException:
        os.unlink(temp)
        raise
    return Path(temp), target, made
