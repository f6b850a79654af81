"""`qc predict`: run an ONNX model over image files and print one JSON line per image."""

from __future__ import annotations

import glob
import json
import sys
from pathlib import Path
from typing import Annotated, NamedTuple

import typer

from qc.commands._options import Providers, provider_list

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp"}


class Found(NamedTuple):
    path: Path  # the image file
    relative: Path  # its path below the argument it came from: its name under --save


def expand(paths: list[str]) -> tuple[list[Found], list[str]]:
    """Files, folders (searched recursively) and glob patterns, to image files, each with its
    path relative to the argument that named it; plus the arguments that matched nothing."""
    found: list[Found] = []
    missing: list[str] = []
    for text in paths:
        path = Path(text)
        if path.is_dir():
            found += [Found(p, p.relative_to(path)) for p in sorted(path.rglob("*"))
                      if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()]
        elif path.is_file():
            found.append(Found(path, Path(path.name)))
        elif any(ch in text for ch in "*?["):
            root = _literal_prefix(text)
            matches = sorted(Path(m) for m in glob.glob(text, recursive=True) if Path(m).is_file())
            found += [Found(m, _relative(m, root)) for m in matches]
            if not matches:
                missing.append(text)
        else:
            missing.append(text)
    return found, missing


def _literal_prefix(pattern: str) -> Path:
    """The folder part of a glob pattern before its first wildcard: 'dup/*/f.jpg' -> 'dup'."""
    parts = Path(pattern).parts
    literal = next(i for i, part in enumerate(parts) if any(ch in part for ch in "*?["))
    return Path(*parts[:literal]) if literal else Path()


def _relative(path: Path, root: Path) -> Path:
    try:
        return path.relative_to(root)
    except ValueError:
        return Path(path.name)


def inputs(paths: list[str], *, save: bool) -> tuple[list[Found], dict[Path, Path], bool]:
    """The images PATHS name, their --save names, and whether any PATH named nothing (each such
    PATH is said on stderr): what `qc predict` reads, for an ONNX model or a .qcgood."""
    found, missing = expand(paths)
    for text in missing:
        print(f"{text}: no such file, folder or matching pattern", file=sys.stderr)
    return found, save_names(found) if save else {}, bool(missing)


def save_names(found: list[Found]) -> dict[Path, Path]:
    """Each image's file name under --save: its path relative to its argument, made unique
    when two arguments give the same one (f.jpg, f-2.jpg, ...); a file named twice keeps one."""
    taken: dict[Path, Path] = {}  # name under --save -> the source file
    names: dict[Path, Path] = {}
    for item in found:
        source = item.path.resolve()
        if source in names:
            continue
        name, n = item.relative, 1
        while name in taken:
            n += 1
            name = item.relative.with_name(f"{item.relative.stem}-{n}{item.relative.suffix}")
        taken[name] = source
        names[source] = name
    return names


def _prepare_save(save: Path) -> None:
    from inspection.errors import ConfigError

    if save.exists() and not save.is_dir():
        raise ConfigError(f"--save {save}: is a file, not a folder; name a folder (it is created when missing)")
    try:
        save.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ConfigError(f"--save {save}: cannot create the folder ({error.strerror}); name another") from error


def _own_reference(path: Path):
    from inspection.data.formats.yolo import reference_path_for
    from inspection.detect.imaging import read_file
    from inspection.errors import ImageError

    found = reference_path_for(path.absolute())
    if found is None:
        raise ImageError("the model judges frames against a reference and none was found; "
                         "pass --reference GOLDEN.png, or put it in a references/ folder beside images/")
    return read_file(found)


def predict(
    paths: Annotated[list[str], typer.Argument(help="Image files, folders or glob patterns.")],
    model: Annotated[Path, typer.Option("--model", "-m", help="ONNX detection model, or a good-only model "
                                        "(.qcgood, from qc goodonly build).")],
    conf: Annotated[float, typer.Option(help="Confidence threshold.", min=0, max=1)] = 0.25,
    iou: Annotated[float, typer.Option(help="IoU threshold of non-maximum suppression.", min=0, max=1)] = 0.7,
    imgsz: Annotated[
        int | None, typer.Option(help="Input size; only for models exported with dynamic shapes.")
    ] = None,
    save: Annotated[Path | None, typer.Option(help="Folder for copies of the images with boxes drawn.")] = None,
    providers: Providers = None,
    decode: Annotated[
        str,
        typer.Option(
            help="JPEG decode reduction: auto (decode at 1/2..1/8 size when the network shrinks "
            "the frame that much anyway), or 1, 2, 4, 8. Use 1 for boxes equal to Ultralytics' "
            "predictions (the reduced decode changes pixels)."
        ),
    ] = "auto",
    tile: Annotated[
        int | None,
        typer.Option(help="Judge each image in tiles of this many pixels at native resolution (large camera "
                     "frames with small defects); boxes are merged across tiles. Decodes at full size.",
                     min=32),
    ] = None,
    tile_overlap: Annotated[int, typer.Option(help="Pixels shared by neighbouring tiles.", min=0)] = 64,
    reference: Annotated[
        Path | None,
        typer.Option(
            help="The golden part every image is judged against (a reference model needs one; "
            "a plain model ignores it). Default: each image's own reference in a references/ or "
            "templates/ folder beside images/, when there is one."
        ),
    ] = None,
) -> None:
    """Detect defects in images; print {"image", "width", "height", "detections"} per line.

    With a reference model each line also has "alignment": {"score", "shift"}; a good-only
    model (.qcgood) adds "anomaly_score", and --save draws its anomaly map too. Unreadable
    images are reported on stderr by name and the others still run; the exit code is 1 if any
    image failed.
    """
    import cv2

    from inspection.detect.detector import Detector
    from inspection.detect.drawing import draw
    from inspection.detect.goodonly import is_goodonly_file
    from inspection.errors import ImageError
    from inspection.settings import Settings

    if decode not in ("auto", "1", "2", "4", "8"):
        raise typer.BadParameter("use auto, 1, 2, 4 or 8", param_hint="--decode")
    if save:
        _prepare_save(save)
    if is_goodonly_file(model):  # its own golden; conf, providers and tiles do not apply
        from qc.commands.goodonly import predict_goodonly

        predict_goodonly(model, paths, save=save)
    settings = Settings()
    chosen = provider_list(providers, settings)
    detector = Detector(
        model,
        providers=chosen,
        conf=conf,
        iou=iou,
        imgsz=imgsz,
        threads=settings.threads,
        cache_dir=settings.home / "trt-cache",
    )
    tiling = None
    if tile is not None:
        from inspection.detect.tiling import Tiling

        tiling = Tiling(size=tile, overlap=tile_overlap)  # a ConfigError names a bad pair
        decode = "1"
    golden = None
    if reference is not None:
        from inspection.detect.imaging import read_file

        golden = read_file(reference)  # an unreadable reference stops here, named
    found, names, failed = inputs(paths, save=save is not None)
    for path, _ in found:
        try:
            data = path.read_bytes()
            image, (width, height) = detector.load_bytes(data, reduce=decode)
        except (OSError, ImageError) as error:
            print(f"{path}: {getattr(error, 'strerror', None) or error}", file=sys.stderr)
            failed = True
            continue
        record: dict = {"image": str(path), "width": width, "height": height}
        network_input = image
        if detector.needs_reference:
            try:
                own = golden if golden is not None else _own_reference(path)
            except (OSError, ImageError) as error:
                print(f"{path}: {error}", file=sys.stderr)
                failed = True
                continue
            network_input, aligned = detector.reference_input(image, own)
            scale = width / image.shape[1]
            record["alignment"] = {"score": round(aligned.score, 4),
                                   "shift": [round(aligned.shift[0] * scale, 2), round(aligned.shift[1] * scale, 2)]}
        if tiling is not None:
            detections = detector.predict_tiled_input(network_input, tiling, original_size=(width, height))
            record["tiles"] = tiling.count(image.shape[:2])
        else:
            detections = detector.predict_inputs([network_input], original_sizes=[(width, height)])[0]
        record["detections"] = detections.to_records()
        print(json.dumps(record), flush=True)
        if save:
            full = image if image.shape[:2] == (height, width) else detector.load_bytes(data, reduce=1)[0]
            target = save / names[path.resolve()]
            target.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(target), draw(full, detections))
    if save:
        print(f"annotated images in {save}", file=sys.stderr)
    raise typer.Exit(1 if failed else 0)
