"""Writes that survive a crash or a power cut: temp file, fsync, rename, fsync the folder.

A rename is atomic (readers see the old file or the new one, never half of it), but it is
only durable once the folder holding it is fsynced; before that, a power cut can undo it.
Used by the image store, the model registry and its production pointer.

Example::

    write_json_atomic(models_dir / "pcb" / "production.json", {"version": "v3"})
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: Path) -> None:
    """Flush a file written by someone else (e.g. `shutil.copy2`) to disk before renaming it in."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_bytes_atomic(path: Path, data: bytes, *, prefix: str = ".incoming-") -> None:
    """Write `data` to `path` durably; folders that did not exist are made and fsynced."""
    new_folders = [f for f in (path.parent.parent, path.parent) if not f.exists()]
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=prefix)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, path)
    except BaseException:
        if os.path.exists(temp):
            os.unlink(temp)
        raise
    for folder in [*(f.parent for f in new_folders), path.parent]:
        fsync_folder(folder)


def write_json_atomic(path: Path, value: Any) -> None:
    write_bytes_atomic(path, json.dumps(value, indent=2, sort_keys=True).encode(), prefix=f".{path.name}.")
