"""`qc predict`: run an ONNX model over image files and print one JSON line per image."""

from __future__ import annotations

import glob
import json
import sys
from pathlib import Path
from typing import Annotated

import typer

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp"}


def expand(paths: list[str]) -> tuple[list[Path], list[str]]:
    """Files, folders (searched recursively) and glob patterns, to image files; plus the
    arguments that matched nothing."""
    found: list[Path] = []
    missing: list[str] = []
    for text in paths:
        path = Path(text)
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        elif path.is_file():
            found.append(path)
        elif any(ch in text for ch in "*?["):
            matches = sorted(Path(m) for m in glob.glob(text, recursive=True) if Path(m).is_file())
            found += matches
            if not matches:
                missing.append(text)
        else:
            missing.append(text)
    return found, missing


def predict(
    paths: Annotated[list[str], typer.Argument(help="Image files, folders or glob patterns.")],
    model: Annotated[Path, typer.Option("--model", "-m", help="ONNX detection model.")],
    conf: Annotated[float, typer.Option(help="Confidence threshold.", min=0, max=1)] = 0.25,
    iou: Annotated[float, typer.Option(help="IoU threshold of non-maximum suppression.", min=0, max=1)] = 0.7,
    imgsz: Annotated[
        int | None, typer.Option(help="Input size; only for models exported with dynamic shapes.")
    ] = None,
    save: Annotated[Path | None, typer.Option(help="Folder for copies of the images with boxes drawn.")] = None,
    providers: Annotated[
        str, typer.Option(help="Execution providers: auto (TensorRT, CUDA, CPU), or e.g. 'cuda,cpu'.")
    ] = "auto",
    decode: Annotated[
        str,
        typer.Option(
            help="JPEG decode reduction: auto (decode at 1/2..1/8 size when the network shrinks "
            "the frame that much anyway), or 1, 2, 4, 8."
        ),
    ] = "auto",
) -> None:
    """Detect defects in images; print {"image", "width", "height", "detections"} per line.

    Unreadable images are reported on stderr by name and the others still run; the exit code
    is 1 if any image failed.
    """
    import cv2

    from inspection.detector import Detector
    from inspection.drawing import draw
    from inspection.errors import ImageError
    from inspection.settings import Settings

    if decode not in ("auto", "1", "2", "4", "8"):
        raise typer.BadParameter("use auto, 1, 2, 4 or 8", param_hint="--decode")
    settings = Settings()
    detector = Detector(
        model,
        providers=providers.split(","),
        conf=conf,
        iou=iou,
        imgsz=imgsz,
        threads=settings.threads,
        cache_dir=settings.home / "trt-cache",
    )
    files, missing = expand(paths)
    failed = bool(missing)
    for text in missing:
        print(f"{text}: no such file, folder or matching pattern", file=sys.stderr)
    if save:
        save.mkdir(parents=True, exist_ok=True)
    for path in files:
        try:
            data = path.read_bytes()
            image, (width, height) = detector.load_bytes(data, reduce=decode)
        except (OSError, ImageError) as error:
            print(f"{path}: {getattr(error, 'strerror', None) or error}", file=sys.stderr)
            failed = True
            continue
        detections = detector.predict([image], original_sizes=[(width, height)])[0]
        record = {"image": str(path), "width": width, "height": height,
                  "detections": detections.to_records()}
        print(json.dumps(record), flush=True)
        if save:
            full = image if image.shape[:2] == (height, width) else detector.load_bytes(data, reduce=1)[0]
            cv2.imwrite(str(save / path.name), draw(full, detections))
    if save:
        print(f"annotated images in {save}", file=sys.stderr)
    raise typer.Exit(1 if failed else 0)
