"""Choosing ONNX Runtime execution providers: TensorRT, then CUDA, then CPU.

A plant runs `onnxruntime-gpu` on a GPU; a laptop or CI runs `onnxruntime` on the CPU. The
same setting (`QC_PROVIDERS`, default `auto`) works on both: `auto` asks for every GPU
provider this build has, in order of speed, and always ends with CPU, so a missing driver or
TensorRT library degrades to CPU instead of failing (ONNX Runtime skips a provider that fails
to initialise; `Detector.providers` reports what really runs).

Example::

    >>> resolve(["auto"], available=["CPUExecutionProvider"])
    [('CPUExecutionProvider', {})]
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from inspection.errors import ConfigError

TENSORRT = "TensorrtExecutionProvider"
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
_ALIASES = {"tensorrt": TENSORRT, "trt": TENSORRT, "cuda": CUDA, "gpu": CUDA, "cpu": CPU}
_AUTO_ORDER = (TENSORRT, CUDA, CPU)


def available() -> list[str]:
    """The providers this ONNX Runtime build offers."""
    return _build_providers()


def _build_providers() -> list[str]:  # a name `resolve`'s keyword `available` does not shadow
    import onnxruntime as ort

    return ort.get_available_providers()


def resolve(
    preference: Sequence[str],
    *,
    available: Sequence[str] | None = None,
    cache_dir: Path | None = None,
    fp16: bool = True,
) -> list[tuple[str, dict]]:
    """Providers with options, in order, for `onnxruntime.InferenceSession(providers=...)`.

    `preference` holds 'auto' or names such as 'tensorrt', 'cuda', 'cpu' (or ORT's full
    provider names). `available` lists the providers this build offers (default: what
    `available()` says); unavailable GPU providers are skipped; CPU is always last.
    `cache_dir` keeps TensorRT's engine cache under QC_HOME, never in the working folder.
    """
    have = list(available if available is not None else _build_providers())
    wanted: list[str] = []
    for name in preference or ["auto"]:
        if name.strip().lower() == "auto":
            wanted.extend(_AUTO_ORDER)
        else:
            wanted.append(full_name(name))
    chosen: list[tuple[str, dict]] = []
    for name in dict.fromkeys([*wanted, CPU]):  # keep order, drop repeats, CPU last resort
        if name not in have:
            continue
        chosen.append((name, _options(name, cache_dir=cache_dir, fp16=fp16)))
    return chosen


def full_name(name: str) -> str:
    """ORT's provider name for 'tensorrt', 'cuda', 'cpu' (or a full name); ConfigError otherwise."""
    key = name.strip()
    full = _ALIASES.get(key.lower(), key)
    if full not in (TENSORRT, CUDA, CPU):
        raise ConfigError(
            f"unknown execution provider {name!r}; use auto, tensorrt, cuda or cpu "
            "(QC_PROVIDERS or --providers)"
        )
    return full


def _options(name: str, *, cache_dir: Path | None, fp16: bool) -> dict:
    if name == TENSORRT:
        options: dict = {"trt_fp16_enable": fp16}
        if cache_dir is not None:
            cache_dir.mkdir(parents=True, exist_ok=True)
            # Building an engine takes minutes; the cache makes the next start take seconds.
            options |= {"trt_engine_cache_enable": True, "trt_engine_cache_path": str(cache_dir)}
        return options
    return {}
