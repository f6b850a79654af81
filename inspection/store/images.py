"""Content-addressed image files: `<root>/<ab>/<cd>/<sha256>.<ext>`.

The same frame posted twice is stored once. A file is written to a temporary name, fsynced
and renamed, and its folder fsynced, before the record that names it is committed: a record
never points at a missing or half-written image, even after a power cut.

Example::

    images = ImageStore(settings.images_dir)
    sha = images.put(jpeg_bytes, "jpeg")
    images.read(sha) == images.path(sha).read_bytes() == jpeg_bytes

`ImageStorage` is what the service needs of any store: this folder (the default, or a folder
shared by replicas) or S3-compatible object storage (`inspection/store/image_store_s3.py`),
chosen by QC_IMAGE_STORE (`inspection/store/image_stores.py`).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Protocol

from inspection.durable import write_bytes_atomic
from inspection.errors import NotFound

EXTENSIONS = {"jpeg": ".jpg", "png": ".png", "bmp": ".bmp"}


class ImageStoreUnavailable(OSError):
    """The store cannot be reached or refused a write: nothing was recorded, retry later (503)."""


class ImageStorage(Protocol):
    def put(self, data: bytes, image_format: str) -> str:
        """Store durably (before any record names it); the sha256 that names it."""
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
        sha = hashlib.sha256(data).hexdigest()
        target = self._folder(sha) / f"{sha}{EXTENSIONS.get(image_format, '.bin')}"
        if target.exists():
            return sha
        write_bytes_atomic(target, data)
        return sha

    def path(self, sha: str) -> Path:
        folder = self._folder(sha)
        for ext in EXTENSIONS.values():
            candidate = folder / f"{sha}{ext}"
            if candidate.exists():
                return candidate
        raise NotFound(f"image {sha} is not stored (PASS frames are kept only at the sample rate)")

    def read(self, sha: str, image_format: str | None = None) -> bytes:
        return self.path(sha).read_bytes()
