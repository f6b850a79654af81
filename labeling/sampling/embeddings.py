"""Each frame's embedding from the production detector itself: its pooled neck features.

Example::

    from labeling.sampling.embeddings import DetectorEmbeddings

    embeddings = DetectorEmbeddings("models/default/v3/model.onnx", images)   # images: an image store
    vectors = embeddings.vectors(records)     # {inspection id: unit-length float32 vector}

The set-level strategies (typical_diverse, uncertain_diverse) need to know which frames look
alike. The design, chosen for being the simplest that is robust:

- A second pass at sampling time, over the stored images, with ONNX Runtime: no torch, no
  second model, nothing downloaded, and it works for every model already registered (an extra
  output added at export would only exist in models exported after it, and would touch the
  file the service serves).
- The served model file is not changed: the graph is copied in memory, the detection head's
  input at its coarsest scale becomes an extra output through GlobalAveragePool, and a session
  of its own runs that copy. The service's detector never sees it (the parity path is untouched).
- The head's input is found by the graph's shape alone: among the tensors read by two or more
  convolutions (a detection head's box and class branches both read each scale), those at the
  smallest spatial size after one probing run; the last of them in the graph. For YOLOv8 to
  YOLO26 exports this is the neck's stride-32 output. A graph with no such tensor is refused
  with the reason (ModelError).
- Frames are letterboxed exactly as the detector does (its own `load_bytes` and `prepare`);
  vectors are L2-normalised so distances compare shapes, not brightness scales. Computed once
  per image hash per instance; a sampling run over a week of frames costs one forward pass per
  candidate frame on the CPU.

- A reference model (it judges a frame against its station's golden part, the product's
  recipe for DeepPCB) sees the composed pair, so its embedding is of that pair: the frame
  aligned with the golden part it was judged against (the record's `reference_version`),
  composed as the service composes it. Its features then say what differs from the golden
  part, which is what the sampler should spread over. `references` must be given for one
  (StationReferences); a frame judged without a golden part gets no embedding.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from inspection.detect.detector import Detector
from inspection.detect.goodonly import is_goodonly_file
from inspection.detect.preprocess import to_tensor
from inspection.errors import ModelError, NotFound
from inspection.store.records import InspectionRecord
from inspection.store.references import StationReferences
from labeling.sampling.frames import StoredFrames

POOLED = "qc_pooled_neck_features"


class DetectorEmbeddings:
    """Pooled neck features of an ONNX detector for stored frames (`Embeddings` of sampler.py)."""

    def __init__(self, model_path: str | Path, images: Any, *, references: StationReferences | None = None,
                 threads: int = 1) -> None:
        import onnx
        import onnxruntime as ort

        self.path = Path(model_path)
        if is_goodonly_file(self.path):
            raise ModelError(f"{self.path} is a good-only model: it has no learned features to embed frames with; "
                             "the set-level lines pick nothing until a supervised model is in production")
        self.detector = Detector(self.path, providers=["cpu"], threads=threads, warmup=False)
        self.frames = StoredFrames(self.detector, images, references=references)
        model = onnx.load(str(self.path))
        feature = head_input(model, self._blank(), threads=threads)
        self.feature = feature
        _add_pooled_output(model, feature)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        self._cache: dict[str, np.ndarray] = {}

    def _blank(self) -> np.ndarray:
        h, w = self.detector.input_hw
        prepared, _ = self.detector.prepare(np.full((h, w, 3), 114, np.uint8))
        return to_tensor([prepared], dtype=self.detector.input_dtype)

    def vector(self, image: np.ndarray, size: tuple[int, int], golden: np.ndarray | None = None) -> np.ndarray:
        """The unit-length embedding of one decoded frame of original (width, height) `size`
        (judged against `golden`, the grey golden part fitted to it, for a reference model)."""
        if golden is not None:
            image, _ = self.detector.reference_input(image, golden)
        prepared, _ = self.detector.prepare(image, original_size=size)
        batch = to_tensor([prepared], dtype=self.detector.input_dtype)
        [pooled] = self.session.run([POOLED], {self.detector.input_name: batch})
        vector = np.asarray(pooled, dtype=np.float32).reshape(-1)
        norm = float(np.linalg.norm(vector))
        return vector / norm if norm > 0 else vector

    def vectors(self, records: Sequence[InspectionRecord]) -> dict[str, np.ndarray]:
        found = {}
        for record in records:
            key = self.frames.key(record)  # a reference model's pair is keyed by its golden part too
            if key is None:
                continue  # no image, or judged without a golden part: nothing to embed
            if key not in self._cache:
                try:
                    self._cache[key] = self.vector(*self.frames.load(record))
                except (NotFound, OSError, ValueError):  # the image gone or unreadable: no embedding
                    continue
            found[record.id] = self._cache[key]
        return found


def head_input(model: Any, blank: np.ndarray, *, threads: int = 1) -> str:
    """The name of the tensor the detection head reads at its coarsest scale (see the module
    docstring): probed by one run of a copy of `model` on `blank`."""
    import onnx
    import onnxruntime as ort

    graph = model.graph
    readers: dict[str, int] = {}
    for node in graph.node:
        if node.op_type == "Conv" and node.input:
            readers[node.input[0]] = readers.get(node.input[0], 0) + 1
    shared = [out for node in graph.node for out in node.output if readers.get(out, 0) >= 2]
    if not shared:
        raise ModelError("no tensor of the model is read by two convolutions (a detection head's branches); "
                         "embeddings cannot be taken from it")
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    elem = graph.input[0].type.tensor_type.elem_type
    del probe.graph.output[:]
    probe.graph.output.extend(onnx.helper.make_tensor_value_info(name, elem, None) for name in shared)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(probe.SerializeToString(), options, providers=["CPUExecutionProvider"])
    outputs = session.run(shared, {graph.input[0].name: blank})
    maps = [(name, out.shape) for name, out in zip(shared, outputs, strict=True) if out.ndim == 4]
    if not maps:
        raise ModelError("no feature map (N, C, H, W) is read by two convolutions; embeddings cannot be taken")
    smallest = min(h * w for _, (_, _, h, w) in maps)
    return [name for name, (_, _, h, w) in maps if h * w == smallest][-1]


def _add_pooled_output(model: Any, feature: str) -> None:
    """`feature` pooled over space and flattened, as the extra output POOLED (in memory only)."""
    import onnx

    graph = model.graph
    pooled = f"{POOLED}_4d"
    graph.node.extend([onnx.helper.make_node("GlobalAveragePool", [feature], [pooled], name=f"{POOLED}_pool"),
                       onnx.helper.make_node("Flatten", [pooled], [POOLED], name=f"{POOLED}_flatten", axis=1)])
    graph.output.append(onnx.helper.make_tensor_value_info(POOLED, graph.input[0].type.tensor_type.elem_type, None))
