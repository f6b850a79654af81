"""The project's exception types. Every message says what went wrong and how to fix it.

Catch `QCError` at the edges (CLI, HTTP) and show `str(error)` as it is.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pydantic is imported by whoever has a ValidationError to show
    from pydantic import ValidationError


class QCError(Exception):
    """Base class: something the user can fix, described so they can."""


class ConfigError(QCError):
    """Settings, rules or a recipe are invalid."""


class ModelError(QCError):
    """A model file is missing, is not an ONNX detection model, or cannot run here."""


class ImageError(QCError):
    """An image cannot be read, or is refused (too large, unknown format)."""


class ImageTooLarge(ImageError):
    """An image has more pixels than the limit; refused before its pixels are decoded."""


class DamagedImage(ImageError):
    """An image's header is readable but its pixel data is corrupt or incomplete (a frame cut
    short, flipped bytes in a JPEG scan): never judged as if it were whole."""


class DatasetError(QCError):
    """A dataset cannot be read or written."""


class RegistryError(QCError):
    """A model registry entry is missing, incomplete or corrupt."""


class PromotionRefused(RegistryError):
    """The promotion gate refused a candidate; the message holds the comparison table."""


class NotFound(QCError):
    """A station, inspection, model or key that does not exist."""


class Conflict(QCError):
    """Something already exists, or the request conflicts with the current state."""


def validation_problems(
    error: ValidationError, *, label: Callable[[tuple[int | str, ...]], str] | None = None
) -> str:
    """One line for a pydantic `ValidationError`: "key: problem (got 'value')" per problem,
    joined by "; ". `label(loc)` names a field's location (default: the dotted path)."""
    name = label or (lambda loc: ".".join(str(part) for part in loc))
    problems = []
    for problem in error.errors():
        text = f"{name(tuple(problem.get('loc', ())))}: {problem.get('msg', 'invalid')}"
        value = problem.get("input")
        if problem.get("type") != "missing" and isinstance(value, (str, int, float, bool)):
            text += f" (got {value!r})"
        problems.append(text)
    return "; ".join(problems)
