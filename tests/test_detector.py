"""The detector's building blocks behave exactly like Ultralytics', and bad models are refused
with a message that names the file (fast: no training; parity on real models is in
test_parity.py)."""

from __future__ import annotations

import numpy as np
import pytest

from inspection.detect.nms import CLASS_OFFSET, nms
from inspection.detect.postprocess import Layout, decode
from inspection.detect.preprocess import letterbox, scale_boxes
from inspection.detect.providers import CPU, CUDA, TENSORRT, resolve
from inspection.detections import Detections
from inspection.errors import ConfigError, ModelError

SHAPES = [(640, 640), (2048, 2448), (480, 640), (1000, 333), (37, 1501), (320, 320), (719, 1283)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("target", [(640, 640), (320, 320), (384, 640)])
def test_letterbox_matches_ultralytics_pixel_for_pixel(shape, target):
    from ultralytics.data.augment import LetterBox

    rng = np.random.default_rng(shape[0])
    image = rng.integers(0, 255, (*shape, 3), dtype=np.uint8)
    ours, _ = letterbox(image, new_shape=target)
    theirs = LetterBox(new_shape=target, auto=False, stride=32)(image=image)
    assert ours.shape == theirs.shape
    assert np.array_equal(ours, theirs)


@pytest.mark.parametrize("shape", SHAPES)
def test_boxes_map_back_like_ultralytics_scale_boxes(shape):
    import torch
    from ultralytics.utils.ops import scale_boxes as ul_scale_boxes

    image = np.zeros((*shape, 3), np.uint8)
    _, info = letterbox(image, new_shape=(640, 640))
    rng = np.random.default_rng(1)
    xy = rng.uniform(0, 600, (50, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(1, 200, (50, 2))], axis=1).astype(np.float32)
    ours = scale_boxes(boxes, info)
    theirs = ul_scale_boxes((640, 640), torch.from_numpy(boxes.copy()), shape).numpy()
    np.testing.assert_allclose(ours, theirs, atol=1e-3)


def test_reduced_decode_boxes_are_expressed_in_the_original_frame():
    reduced = np.zeros((512, 612, 3), np.uint8)  # a 2448x2048 frame decoded at 1/4
    _, info = letterbox(reduced, new_shape=(640, 640), original_size=(2448, 2048))
    (left, top), (width, height) = info.pad, info.resized
    box = np.array([[left, top, left + width, top + height]], np.float32)  # all of the image
    mapped = scale_boxes(box, info)
    np.testing.assert_allclose(mapped[0], [0, 0, 2448, 2048], atol=1)


def test_nms_keeps_the_same_boxes_as_torchvision_with_class_offsets():
    import torch
    import torchvision

    rng = np.random.default_rng(3)
    for trial in range(20):
        n = int(rng.integers(1, 400))
        xy = rng.uniform(0, 300, (n, 2))
        boxes = np.concatenate([xy, xy + rng.uniform(2, 80, (n, 2))], axis=1).astype(np.float32)
        scores = rng.uniform(0, 1, n).astype(np.float32)
        classes = rng.integers(0, 4, n)
        ours = nms(boxes, scores, classes, iou_threshold=0.5, max_det=1000)
        offset = torch.from_numpy(boxes) + torch.from_numpy(classes.astype(np.float32))[:, None] * 7680
        theirs = torchvision.ops.nms(offset, torch.from_numpy(scores), 0.5).numpy()
        assert ours.tolist() == theirs.tolist(), f"trial {trial}"


def reference_nms(boxes, scores, class_id, *, iou_threshold, max_det=300):
    """The NumPy NMS qc used before OpenCV's, kept as the specification: torchvision's
    algorithm with Ultralytics' class offsets, stopping at max_det kept boxes."""
    if len(boxes) == 0:
        return np.zeros(0, np.int64)
    boxes = boxes.astype(np.float32, copy=False)
    if class_id is not None:
        boxes = boxes + (class_id.astype(np.float32) * CLASS_OFFSET)[:, None]
    order = np.argsort(-scores, kind="stable")
    x1, y1, x2, y2 = (boxes[:, k] for k in range(4))
    areas = (x2 - x1) * (y2 - y1)
    keep: list[int] = []
    while order.size and len(keep) < max_det:
        best = order[0]
        keep.append(int(best))
        rest = order[1:]
        w = np.minimum(x2[best], x2[rest]) - np.maximum(x1[best], x1[rest])
        h = np.minimum(y2[best], y2[rest]) - np.maximum(y1[best], y1[rest])
        inter = np.clip(w, 0, None) * np.clip(h, 0, None)
        with np.errstate(divide="ignore", invalid="ignore"):  # degenerate boxes: NaN, kept
            iou = inter / (areas[best] + areas[rest] - inter)
        order = rest[~(iou > iou_threshold)]
    return np.asarray(keep, dtype=np.int64)


def random_boxes(rng, n, *, ties=False, degenerate=False):
    """Boxes as a raw head gives them: some past the top-left edge, optionally with tied
    scores and boxes of zero width or height."""
    xy = rng.uniform(-30, 600, (n, 2))
    wh = rng.uniform(1, 120, (n, 2))
    if degenerate:
        wh[rng.random((n, 2)) < 0.05] = 0
    boxes = np.concatenate([xy, xy + wh], axis=1).astype(np.float32)
    scores = rng.uniform(0.001, 1, n).astype(np.float32)
    if ties:
        scores = (np.round(scores, 2) + 0.01).astype(np.float32)
    return boxes, scores, rng.integers(0, 6, n)


@pytest.mark.parametrize("case", range(48))
def test_nms_keeps_exactly_the_boxes_of_the_reference(case):
    rng = np.random.default_rng(case)
    n = int(rng.choice([1, 2, 40, 300, 1500, 3000]))
    boxes, scores, classes = random_boxes(rng, n, ties=case % 3 == 0, degenerate=case % 4 == 0)
    iou = float(rng.choice([0.3, 0.5, 0.7]))
    max_det = int(rng.choice([1, 10, 300, 5000]))
    for class_id in (classes, None):
        ours = nms(boxes, scores, class_id, iou_threshold=iou, max_det=max_det)
        reference = reference_nms(boxes, scores, class_id, iou_threshold=iou, max_det=max_det)
        assert ours.tolist() == reference.tolist()


def test_nms_of_nothing_is_empty():
    empty = np.zeros((0, 4), np.float32)
    assert nms(empty, np.zeros(0, np.float32), np.zeros(0, int), iou_threshold=0.5).tolist() == []


def test_nms_never_suppresses_across_classes():
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 10]], np.float32)
    keep = nms(boxes, np.array([0.9, 0.8], np.float32), np.array([0, 1]), iou_threshold=0.1)
    assert keep.tolist() == [0, 1]


@pytest.mark.parametrize("conf", [0.001, 0.25, 0.6])
def test_raw_head_decoding_matches_ultralytics_non_max_suppression(conf):
    import torch
    from ultralytics.utils.nms import non_max_suppression
    from ultralytics.utils.ops import scale_boxes as ul_scale_boxes

    rng = np.random.default_rng(5)
    nc, anchors = 6, 2100
    output = np.zeros((4 + nc, anchors), np.float32)
    output[:2] = rng.uniform(0, 320, (2, anchors))
    output[2:4] = rng.uniform(4, 60, (2, anchors))
    output[4:] = rng.uniform(0, 1, (nc, anchors)) ** 6
    _, info = letterbox(np.zeros((320, 320, 3), np.uint8), new_shape=(320, 320))
    names = {i: str(i) for i in range(nc)}
    ours = decode(output, info, layout=Layout.RAW, names=names, conf=conf, iou=0.7)
    theirs = non_max_suppression(torch.from_numpy(output[None]), conf, 0.7, max_det=300)[0]
    theirs[:, :4] = ul_scale_boxes((320, 320), theirs[:, :4], (320, 320))  # as predict() does
    theirs = theirs.numpy()
    assert len(ours) == len(theirs)
    np.testing.assert_allclose(ours.xyxy, theirs[:, :4], atol=1e-3)
    np.testing.assert_allclose(ours.confidence, theirs[:, 4], atol=1e-6)
    assert ours.class_id.tolist() == theirs[:, 5].astype(int).tolist()


def test_end2end_output_is_filtered_by_confidence_only():
    rows = np.array([[10, 10, 50, 50, 0.9, 2], [12, 12, 50, 50, 0.8, 2], [0, 0, 5, 5, 0.1, 0]], np.float32)
    _, info = letterbox(np.zeros((320, 320, 3), np.uint8), new_shape=(320, 320))
    found = decode(rows, info, layout=Layout.END2END, names={0: "a", 1: "b", 2: "c"}, conf=0.25, iou=0.5)
    assert found.class_names == ["c", "c"]  # overlapping boxes stay: NMS already ran in the graph


def test_detections_select_and_serialise():
    d = Detections(xyxy=[[0, 0, 10, 20], [5, 5, 6, 6]], confidence=[0.9, 0.3], class_id=[1, 0],
                   names={0: "dent", 1: "scratch"}, image_wh=(64, 48))
    kept = d[d.confidence > 0.5]
    assert len(kept) == 1 and kept.class_names == ["scratch"] and kept.image_wh == (64, 48)
    assert d.area.tolist() == [200.0, 1.0]
    again = Detections.from_records(d.to_records(), names=d.names, image_wh=d.image_wh)
    np.testing.assert_allclose(again.xyxy, d.xyxy)


def test_auto_providers_prefer_tensorrt_then_cuda_and_always_end_with_cpu(tmp_path):
    chosen = resolve(["auto"], available=[CPU, CUDA, TENSORRT], cache_dir=tmp_path / "trt")
    assert [name for name, _ in chosen] == [TENSORRT, CUDA, CPU]
    assert chosen[0][1]["trt_engine_cache_path"] == str(tmp_path / "trt")
    assert [name for name, _ in resolve(["cuda"], available=[CPU])] == [CPU]


def test_unknown_provider_names_the_setting():
    with pytest.raises(ConfigError, match="QC_PROVIDERS"):
        resolve(["vulkan"], available=[CPU])


def test_a_file_that_is_not_onnx_is_refused_by_name(tmp_path):
    from inspection.detect.detector import Detector

    bogus = tmp_path / "weights.onnx"
    bogus.write_bytes(b"not a model at all")
    with pytest.raises(ModelError, match=r"weights\.onnx.*expected a detection model"):
        Detector(bogus)
    with pytest.raises(ModelError, match="no such model file"):
        Detector(tmp_path / "missing.onnx")


def _tiny_onnx(path, *, output_shape, names="{0: 'a', 1: 'b'}"):
    """A one-node ONNX graph: image in, a reshaped tensor of `output_shape` out."""
    import onnx
    from onnx import TensorProto, helper

    size = int(np.prod(output_shape))
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["images"], ["flat"], axis=1),
         helper.make_node("Slice", ["flat", "starts", "ends", "axes"], ["part"]),
         helper.make_node("Reshape", ["part", "shape"], ["output0"])],
        "tiny",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 32, 32])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, list(output_shape))],
        initializer=[helper.make_tensor("starts", TensorProto.INT64, [1], [0]),
                     helper.make_tensor("ends", TensorProto.INT64, [1], [size]),
                     helper.make_tensor("axes", TensorProto.INT64, [1], [1]),
                     helper.make_tensor("shape", TensorProto.INT64, [len(output_shape)], list(output_shape))],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    for key, value in {"names": names, "imgsz": "[32, 32]", "stride": "32", "task": "detect"}.items():
        prop = model.metadata_props.add()
        prop.key, prop.value = key, value
    onnx.save(model, str(path))
    return path


def test_an_unknown_output_layout_is_refused_with_what_was_expected(tmp_path):
    from inspection.detect.detector import Detector

    path = _tiny_onnx(tmp_path / "odd.onnx", output_shape=(1, 9, 10))  # 2 classes: expects 6 rows
    with pytest.raises(ModelError, match=r"odd\.onnx: unknown output layout \[1, 9, 10\]"):
        Detector(path)


def test_a_raw_layout_model_loads_and_reports_its_io(tmp_path):
    from inspection.detect.detector import Detector

    detector = Detector(_tiny_onnx(tmp_path / "ok.onnx", output_shape=(1, 6, 10)))
    assert detector.layout is Layout.RAW and detector.input_hw == (32, 32) and detector.batch == 1
    assert detector.providers[-1] == CPU
    assert detector.predict([np.zeros((64, 48, 3), np.uint8)])[0].image_wh == (48, 64)


def test_a_static_model_refuses_another_input_size(tmp_path):
    from inspection.detect.detector import Detector

    with pytest.raises(ModelError, match="takes 32x32 inputs, not 64x64"):
        Detector(_tiny_onnx(tmp_path / "ok.onnx", output_shape=(1, 6, 10)), imgsz=64)


def test_a_decode_reduction_other_than_1_2_4_8_names_the_setting():
    import cv2

    from inspection.detect import imaging
    from inspection.errors import ConfigError

    jpeg = cv2.imencode(".jpg", np.zeros((64, 64, 3), np.uint8))[1].tobytes()
    assert imaging.decode(jpeg, reduce=2).shape == (32, 32, 3)
    with pytest.raises(ConfigError, match="QC_DECODE"):
        imaging.decode(jpeg, reduce=3)


def test_a_frame_over_the_pixel_limit_is_refused_from_its_header():
    import cv2

    from inspection.detect import imaging
    from inspection.errors import ImageTooLarge

    png = cv2.imencode(".png", np.zeros((100, 100, 3), np.uint8))[1].tobytes()
    with pytest.raises(ImageTooLarge, match="100x100 = 10,000 pixels"):
        imaging.decode(png, max_pixels=9_999)


def _tiny_dynamic_onnx(path, *, reshape_all=False):
    """Like `_tiny_onnx`, with a dynamic batch, height and width. `reshape_all` reshapes the
    whole image into the output, which ONNX Runtime loads but cannot run."""
    import onnx
    from onnx import TensorProto, helper

    nodes = [helper.make_node("Flatten", ["images"], ["flat"], axis=1)]
    if reshape_all:
        nodes.append(helper.make_node("Reshape", ["flat", "shape"], ["output0"]))
    else:
        nodes += [helper.make_node("Slice", ["flat", "starts", "ends", "axes"], ["part"]),
                  helper.make_node("Reshape", ["part", "shape"], ["output0"])]
    graph = helper.make_graph(
        nodes,
        "tiny-dynamic",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, "height", "width"])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, 6, 10])],
        initializer=[helper.make_tensor("starts", TensorProto.INT64, [1], [0]),
                     helper.make_tensor("ends", TensorProto.INT64, [1], [60]),
                     helper.make_tensor("axes", TensorProto.INT64, [1], [1]),
                     helper.make_tensor("shape", TensorProto.INT64, [3], [1, 6, 10])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    for key, value in {"names": "{0: 'a', 1: 'b'}", "imgsz": "[64, 64]", "stride": "32"}.items():
        prop = model.metadata_props.add()
        prop.key, prop.value = key, value
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize(
    "key, value",
    [("names", "scratch,dent"), ("imgsz", "640x640"), ("imgsz", "[0, 640]"), ("stride", "auto")],
)
def test_malformed_metadata_is_a_model_error_naming_the_key_the_value_and_the_fix(key, value):
    import re

    from inspection.detect.model_info import parse_metadata

    meta = {"names": "{0: 'scratch'}", "imgsz": "[640, 640]", "stride": "32", key: value}
    with pytest.raises(ModelError, match=rf"metadata {key}='{re.escape(value)}' is not .*qc export"):
        parse_metadata(meta)


def test_well_formed_metadata_variants_are_read():
    from inspection.detect.model_info import parse_metadata

    info = parse_metadata({"names": "['scratch', 'dent']", "imgsz": "[640]", "stride": "32"})
    assert info.names == {0: "scratch", 1: "dent"} and info.input_hw == (640, 640) and info.stride == 32
    assert parse_metadata({"imgsz": "320"}).input_hw == (320, 320)


def test_a_model_with_malformed_metadata_is_refused_with_its_path(tmp_path):
    from inspection.detect.detector import Detector

    path = _tiny_onnx(tmp_path / "odd-names.onnx", output_shape=(1, 6, 10), names="scratch,dent")
    with pytest.raises(ModelError, match=r"odd-names\.onnx: metadata names='scratch,dent'"):
        Detector(path)


def test_a_dynamic_model_refuses_an_imgsz_that_is_not_a_multiple_of_its_stride(tmp_path):
    from inspection.detect.detector import Detector

    path = _tiny_dynamic_onnx(tmp_path / "dynamic.onnx")
    assert Detector(path, imgsz=96).input_hw == (96, 96)
    with pytest.raises(ModelError, match=r"dynamic\.onnx: imgsz 650x650 is not a multiple of the "
                                         r"model's stride 32; use the nearest valid size, --imgsz 640"):
        Detector(path, imgsz=650, warmup=False)


def test_a_model_that_loads_but_cannot_run_is_a_model_error_not_an_onnx_runtime_one(tmp_path):
    from inspection.detect.detector import Detector

    path = _tiny_dynamic_onnx(tmp_path / "broken.onnx", reshape_all=True)
    with pytest.raises(ModelError, match=r"broken\.onnx: cannot run here \(.+\); .*--providers cpu"):
        Detector(path)


def test_a_requested_gpu_provider_that_does_not_start_is_reported_and_cpu_runs(tmp_path, caplog):
    from inspection.detect.detector import Detector
    from inspection.detect.providers import available

    if CUDA in available():
        pytest.skip("CUDA is available here: no fallback to report")
    with caplog.at_level("WARNING", logger="qc.detector"):
        detector = Detector(_tiny_onnx(tmp_path / "ok.onnx", output_shape=(1, 6, 10)), providers=["cuda"])
    assert detector.providers == [CPU]
    [record] = [r for r in caplog.records if r.name == "qc.detector"]
    assert "CUDAExecutionProvider requested but not available, running on CPUExecutionProvider" in (
        record.getMessage()
    )
    assert "cuDNN" in record.getMessage()


def test_intra_op_threads_spin_by_default_and_sleep_when_told(tmp_path):
    """`qc serve` turns spinning off (QC_SPIN): idle ORT threads must not take the cores that
    decoding and recording need (BENCHMARKS.md, issue 16)."""
    from inspection.detect.detector import Detector
    from serving.settings import ServeSettings

    path = _tiny_onnx(tmp_path / "ok.onnx", output_shape=(1, 6, 10))

    def spinning(detector: Detector) -> str:
        options = detector.backend._session.get_session_options()
        try:
            return options.get_session_config_entry("session.intra_op.allow_spinning")
        except Exception:  # noqa: BLE001 - ORT raises its own pybind type for an entry never set
            return "default"

    assert spinning(Detector(path)) == "default"
    assert spinning(Detector(path, spin=False)) == "0"
    assert ServeSettings(home=tmp_path).spin is False
