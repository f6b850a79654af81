"""An evaluation drawn for people: one self-contained report.html and the PNGs in it.

Example::

    from inspection.evaluate.metrics import evaluate
    from training.report import write_report

    result = evaluate(predictions, truths, names=names, deploy_conf=0.25)
    html = write_report(result, "reports/candidate", image_paths=paths,
                        details={"model": "candidate.onnx", "data": "deeppcb@v3 (val)"})

The folder gets `report.html` and `pr_curves.png`, `confusion_matrix.png`, `per_class.png`,
`false_positives.png`, `misses.png`. The HTML holds every image inline (base64) and no link
to any stylesheet, script or font, so it can be mailed or archived as one file and opened on
a PC without network. Plots use matplotlib's Agg canvas and its bundled DejaVu Sans font,
without pyplot (no global state, no display); boxes are drawn with OpenCV: truth green,
prediction red.

Needs matplotlib (the `train` extra); not torch.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence
from pathlib import Path

import cv2
import numpy as np

from inspection.detect.imaging import read_file
from inspection.detections import Detections
from inspection.errors import ImageError, QCError
from inspection.evaluate.metrics import Error, Evaluation

_GREEN = (60, 170, 60)  # BGR: truth
_RED = (40, 40, 220)  # BGR: prediction
_TILE = 160  # gallery tile side, pixels
_CONTEXT = 1.0  # a crop shows this many box sizes of surroundings on each side
_MIN_CROP = 96  # ...and at least this many pixels, so a pin-hole is not a blur


def write_report(
    evaluation: Evaluation,
    out_dir: str | Path,
    *,
    image_paths: Sequence[str | Path],
    details: Mapping[str, str] | None = None,
    gallery_size: int = 32,
) -> Path:
    """Write the report into `out_dir` (created if needed); returns the report.html path.

    `image_paths` are the evaluated images, in the order given to `evaluate`; the gallery
    shows up to `gallery_size` false positives (highest scores first) and as many misses.
    `details` are shown at the top (model, data, split, ...).
    """
    if len(image_paths) != evaluation.images:
        raise ValueError(
            f"write_report needs the {evaluation.images} evaluated image paths, "
            f"got {len(image_paths)}"
        )
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise QCError(
            f"{out}: cannot create the report folder ({error.strerror}); pick another --report"
        ) from error
    false_positives = evaluation.false_positives[:gallery_size]
    misses = _by_class(evaluation.misses, gallery_size)
    tiles = _tiles(evaluation, [*false_positives, *misses], image_paths)
    figures = {
        "pr_curves.png": _pr_curves(evaluation),
        "confusion_matrix.png": _confusion(evaluation),
        "per_class.png": _per_class_chart(evaluation),
        "false_positives.png": _gallery(
            evaluation,
            false_positives,
            tiles[: len(false_positives)],
            image_paths,
            title="False positives",
        ),
        "misses.png": _gallery(
            evaluation, misses, tiles[len(false_positives) :], image_paths, title="Misses"
        ),
    }
    for name, png in figures.items():
        (out / name).write_bytes(png)
    page = out / "report.html"
    text = _html(evaluation, figures, details or {}, gallery_size=gallery_size)
    page.write_text(text, encoding="utf-8")
    return page


def _by_class(errors: Sequence[Error], count: int) -> list[Error]:
    """Up to `count` errors taken in turn from each class, so that one class with many
    misses does not fill the gallery; within a class, in image order."""
    queues: dict[int, list[Error]] = {}
    for error in errors:
        queues.setdefault(error.class_id, []).append(error)
    chosen: list[Error] = []
    depth = 0
    while len(chosen) < count and any(depth < len(q) for q in queues.values()):
        chosen += [q[depth] for _, q in sorted(queues.items()) if depth < len(q)]
        depth += 1
    return chosen[:count]


# -- plots -----------------------------------------------------------------------------------


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(figure)
    return figure


def _png(figure) -> bytes:
    import io

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", bbox_inches="tight")
    return buffer.getvalue()


def _pr_curves(evaluation: Evaluation) -> bytes:
    figure = _figure(7, 5)
    axes = figure.add_subplot()
    for class_id, curve in sorted(evaluation.pr_curves.items()):
        ap = evaluation.per_class[class_id].ap50 or 0.0
        label = f"{evaluation.names[class_id]} {ap:.3f}"
        axes.plot(curve.recall, curve.precision, linewidth=1, label=label)
    if evaluation.pr_curves:
        mean = np.mean([c.precision for c in evaluation.pr_curves.values()], axis=0)
        recall = next(iter(evaluation.pr_curves.values())).recall
        label = f"all classes {evaluation.map50:.3f} mAP50"
        axes.plot(recall, mean, color="black", linewidth=2.5, label=label)
        axes.legend(loc="lower left", fontsize=8, title="AP at IoU 0.5", title_fontsize=8)
    else:
        axes.text(0.5, 0.5, "no truth boxes", ha="center", va="center")
    axes.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="Recall", ylabel="Precision")
    axes.set_title("Precision-recall at IoU 0.5 (COCOeval, 101 recall points)")
    axes.grid(alpha=0.3)
    return _png(figure)


def _confusion(evaluation: Evaluation) -> bytes:
    labels = [evaluation.names[c] for c in sorted(evaluation.names)] + ["background"]
    matrix = evaluation.confusion.astype(float)
    size = max(4.0, 0.6 * len(labels) + 2)
    figure = _figure(size + 1, size)
    axes = figure.add_subplot()
    # Colour by share of each true class (column), so a rare class reads as well as a
    # common one; the numbers are counts.
    totals = matrix.sum(axis=0, keepdims=True)
    shares = np.divide(matrix, totals, out=np.zeros_like(matrix), where=totals > 0)
    image = axes.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04, label="share of the true class")
    for (row, column), count in np.ndenumerate(matrix):
        if count:
            colour = "white" if shares[row, column] > 0.6 else "black"
            axes.text(
                column, row, f"{int(count)}", ha="center", va="center", fontsize=8, color=colour
            )
    ticks = range(len(labels))
    axes.set_xticks(ticks, labels, rotation=45, ha="right", fontsize=8)
    axes.set_yticks(ticks, labels, fontsize=8)
    axes.set(xlabel="True", ylabel="Predicted")
    axes.set_title(f"Confusion matrix at conf >= {evaluation.deploy_conf:g}, IoU >= 0.5")
    return _png(figure)


def _per_class_chart(evaluation: Evaluation) -> bytes:
    classes = sorted(evaluation.per_class)
    figure = _figure(max(6.0, 1.1 * len(classes) + 2), 4)
    axes = figure.add_subplot()
    metrics = [evaluation.per_class[c] for c in classes]
    conf = f"{evaluation.deploy_conf:g}"
    series = {
        "AP50": [m.ap50 or 0.0 for m in metrics],
        "AP50-95": [m.ap50_95 or 0.0 for m in metrics],
        f"precision @{conf}": [m.precision for m in metrics],
        f"recall @{conf}": [m.recall for m in metrics],
    }
    width = 0.8 / len(series)
    x = np.arange(len(classes))
    for i, (label, values) in enumerate(series.items()):
        axes.bar(x + (i - (len(series) - 1) / 2) * width, values, width, label=label)
    axes.set_xticks(x, [evaluation.names[c] for c in classes], rotation=30, ha="right", fontsize=8)
    axes.set(ylim=(0, 1.05), ylabel="score")
    axes.legend(fontsize=8, ncols=len(series), loc="upper center", bbox_to_anchor=(0.5, -0.25))
    axes.set_title("Per class")
    axes.grid(axis="y", alpha=0.3)
    return _png(figure)


# -- gallery ---------------------------------------------------------------------------------


def _gallery(
    evaluation: Evaluation,
    errors: Sequence[Error],
    tiles: Sequence[np.ndarray],
    image_paths: Sequence[str | Path],
    *,
    title: str,
) -> bytes:
    columns = 6
    rows = max(1, -(-len(errors) // columns))
    height = rows * 2.1 + 0.4
    figure = _figure(columns * 1.9, height)
    figure.suptitle(f"{title} (truth green, prediction red)", fontsize=10)
    figure.subplots_adjust(top=1 - 0.8 / height, bottom=0.02, hspace=0.4)
    if not errors:
        figure.text(0.5, 0.5, "none", ha="center", va="center")
    for index, (error, tile) in enumerate(zip(errors, tiles, strict=True)):
        axes = figure.add_subplot(rows, columns, index + 1)
        axes.imshow(cv2.cvtColor(tile, cv2.COLOR_BGR2RGB))
        name = evaluation.names.get(error.class_id, str(error.class_id))
        score = "" if error.score is None else f" {error.score:.2f}"
        axes.set_title(f"{Path(image_paths[error.image]).name[:18]}\n{name}{score}", fontsize=7)
        axes.axis("off")
    return _png(figure)


def _tiles(
    evaluation: Evaluation, errors: Sequence[Error], image_paths: Sequence[str | Path]
) -> list[np.ndarray]:
    """The gallery tile of each error, in order. Each image is decoded once however many of
    the errors lie in it, and only one decoded image is held at a time."""
    by_image: dict[int, list[int]] = {}
    for index, error in enumerate(errors):
        by_image.setdefault(error.image, []).append(index)
    tiles: list[np.ndarray] = [np.empty(0)] * len(errors)
    for image_index, indices in by_image.items():
        try:
            image = read_file(image_paths[image_index])
        except ImageError:
            image = None
        for index in indices:
            tiles[index] = _tile(evaluation, errors[index], image)
    return tiles


def _tile(evaluation: Evaluation, error: Error, image: np.ndarray | None) -> np.ndarray:
    """A square crop of `image` (decoded, or None if it could not be read) around the error's
    box with every truth and deployed prediction of the image drawn, scaled to _TILE pixels;
    a grey tile saying so if the image could not be read."""
    if image is None:
        tile = np.full((_TILE, _TILE, 3), 200, np.uint8)
        cv2.putText(
            tile, "unreadable", (8, _TILE // 2), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1
        )
        return tile
    height, width = image.shape[:2]
    # Labels and predictions are in original pixels; the file may decode at another size
    # only if it changed since evaluation, so scale defensively.
    truth: Detections = evaluation.truths[error.image]
    prediction: Detections = evaluation.predictions[error.image]
    scale = _scale(truth.image_wh, (width, height))
    deployed = prediction[prediction.confidence >= evaluation.deploy_conf]
    x1, y1, x2, y2 = (np.array(error.box) * scale).tolist()
    side = max(_MIN_CROP, (1 + 2 * _CONTEXT) * max(x2 - x1, y2 - y1))
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    left = int(np.clip(cx - side / 2, 0, max(0, width - side)))
    top = int(np.clip(cy - side / 2, 0, max(0, height - side)))
    right, bottom = int(min(width, left + side)), int(min(height, top + side))
    crop = image[top:bottom, left:right].copy()
    zoom = _TILE / max(crop.shape[:2])
    interpolation = cv2.INTER_AREA if zoom < 1 else cv2.INTER_LINEAR
    crop = cv2.resize(crop, None, fx=zoom, fy=zoom, interpolation=interpolation)
    for boxes, colour in ((truth.xyxy, _GREEN), (deployed.xyxy, _RED)):
        for box in boxes * scale:
            a = np.round((box[:2] - [left, top]) * zoom).astype(int)
            b = np.round((box[2:] - [left, top]) * zoom).astype(int)
            cv2.rectangle(crop, tuple(a.tolist()), tuple(b.tolist()), colour, 1)
    crop = crop[:_TILE, :_TILE]  # rounding in resize may give one pixel more
    tile = np.full((_TILE, _TILE, 3), 255, np.uint8)
    tile[: crop.shape[0], : crop.shape[1]] = crop
    return tile


def _scale(labelled: tuple[int, int], actual: tuple[int, int]) -> np.ndarray:
    if labelled[0] <= 0 or labelled[1] <= 0:
        return np.ones(4)
    sx, sy = actual[0] / labelled[0], actual[1] / labelled[1]
    return np.array([sx, sy, sx, sy])


# -- the page --------------------------------------------------------------------------------

_STYLE = """
body { font-family: "DejaVu Sans", Verdana, sans-serif; margin: 2em; color: #222;
       max-width: 1100px; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; }
table { border-collapse: collapse; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 4px 10px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
thead th { background: #f0f0f0; }
.headline td { font-size: 1.1em; }
img { max-width: 100%; }
.note { color: #666; font-size: 0.85em; }
"""


def _html(
    evaluation: Evaluation,
    figures: Mapping[str, bytes],
    details: Mapping[str, str],
    *,
    gallery_size: int,
) -> str:
    e = html.escape
    conf = f"{evaluation.deploy_conf:g}"
    head_rows = [(k, str(v)) for k, v in details.items()] + [
        ("images", str(evaluation.images)),
        ("instances (truth boxes)", str(evaluation.instances)),
        ("mAP50", f"{evaluation.map50:.4f}"),
        ("mAP50-95", f"{evaluation.map50_95:.4f}"),
        (
            f"precision / recall / F1 at conf >= {conf}",
            f"{evaluation.precision:.3f} / {evaluation.recall:.3f} / {evaluation.f1:.3f}",
        ),
        (
            "false positives / misses",
            f"{len(evaluation.false_positives)} / {len(evaluation.misses)}",
        ),
    ]
    if evaluation.deeppcb is not None:
        d = evaluation.deeppcb
        head_rows.append(
            (
                f"DeepPCB (IoU > {d.iou:g}) precision / recall / F-score",
                f"{d.precision:.3f} / {d.recall:.3f} / {d.fscore:.3f}",
            )
        )
    headline = "".join(f"<tr><td>{e(k)}</td><td>{e(v)}</td></tr>" for k, v in head_rows)

    def fmt(value: float | None) -> str:
        return "\N{EN DASH}" if value is None else f"{value:.3f}"

    class_rows = "".join(
        f"<tr><td>{e(m.name)}</td><td>{m.support}</td>"
        f"<td>{fmt(m.ap50)}</td><td>{fmt(m.ap50_95)}</td>"
        f"<td>{fmt(m.precision)}</td><td>{fmt(m.recall)}</td><td>{fmt(m.f1)}</td>"
        f"<td>{m.tp}</td><td>{m.fp}</td><td>{m.fn}</td></tr>"
        for _, m in sorted(evaluation.per_class.items())
    )

    def img(name: str, alt: str) -> str:
        data = base64.b64encode(figures[name]).decode("ascii")
        return f'<img src="data:image/png;base64,{data}" alt="{e(alt)}">'

    shown_fp = min(gallery_size, len(evaluation.false_positives))
    shown_miss = min(gallery_size, len(evaluation.misses))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>qc evaluation</title>
<style>{_STYLE}</style></head>
<body>
<h1>Evaluation</h1>
<table class="headline">{headline}</table>
<p class="note">mAP by COCOeval (faster-coco-eval, equal to pycocotools; bbox, all areas, up to 300 boxes per image).
Precision, recall, F1, the confusion matrix and the gallery are at the deploy threshold,
conf &gt;= {e(conf)}, matching a truth of the same class at IoU &gt;= 0.5, greedy by score.</p>
<h2>Per class</h2>
<table><thead><tr><th>class</th><th>support</th><th>AP50</th><th>AP50-95</th>
<th>precision</th><th>recall</th><th>F1</th><th>TP</th><th>FP</th><th>FN</th></tr></thead>
<tbody>{class_rows}</tbody></table>
{img("per_class.png", "per-class scores")}
<h2>Precision-recall curves</h2>
{img("pr_curves.png", "precision-recall curves")}
<h2>Confusion matrix</h2>
{img("confusion_matrix.png", "confusion matrix")}
<h2>False positives ({shown_fp} of {len(evaluation.false_positives)}, highest scores first)</h2>
{img("false_positives.png", "false positives")}
<h2>Misses ({shown_miss} of {len(evaluation.misses)}, each class in turn)</h2>
{img("misses.png", "misses")}
</body></html>
"""


# -- training curves -------------------------------------------------------------------------


def write_training_curves(results_csv: Path, out: Path) -> Path | None:
    """Loss and validation mAP per epoch from Ultralytics' results.csv, as one PNG (its own
    plots need a downloaded font, so training runs with plots=False and qc draws these)."""
    import csv

    if not results_csv.is_file():
        return None
    with results_csv.open() as file:
        rows = [{k.strip(): v for k, v in row.items()} for row in csv.DictReader(file)]
    if not rows:
        return None
    epochs = [int(float(r["epoch"])) for r in rows]
    figure = _figure(10, 3.6)
    losses, maps = figure.add_subplot(1, 2, 1), figure.add_subplot(1, 2, 2)
    for key in [k for k in rows[0] if k.startswith(("train/", "val/")) and k.endswith("loss")]:
        losses.plot(epochs, [float(r[key]) for r in rows], label=key, linestyle="-" if "train" in key else "--")
    losses.set_xlabel("epoch")
    losses.set_title("losses")
    losses.legend(fontsize=7)
    for key, label in (("metrics/mAP50(B)", "mAP50"), ("metrics/mAP50-95(B)", "mAP50-95")):
        if key in rows[0]:
            maps.plot(epochs, [float(r[key]) for r in rows], marker="o", label=label)
    maps.set_xlabel("epoch")
    maps.set_ylim(0, 1)
    maps.set_title("validation (Ultralytics' validator)")
    maps.legend(fontsize=8)
    out.write_bytes(_png(figure))
    return out
