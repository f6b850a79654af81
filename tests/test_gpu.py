"""On a machine with onnxruntime-gpu and a GPU, the detector runs on CUDA (or TensorRT) and
gives the CPU's boxes; elsewhere these tests skip. Serving always falls back to CPU."""

from __future__ import annotations

import numpy as np
import pytest

from inspection.detect.providers import CPU, CUDA, TENSORRT, available

pytestmark = pytest.mark.gpu


def _need(provider: str) -> None:
    if provider not in available():
        pytest.skip(f"{provider} is not available here (CPU-only onnxruntime or no GPU)")


@pytest.mark.parametrize("provider", [CUDA, TENSORRT])
def test_the_detector_runs_on_the_gpu_with_the_cpus_boxes(provider, untrained_model, tmp_path):
    from inspection.data.synth import make_sample
    from inspection.detect.detector import Detector

    _need(provider)
    image = make_sample(3, width=320, height=320).image
    gpu = Detector(untrained_model, providers=[provider], conf=0.0001, cache_dir=tmp_path / "trt")
    if gpu.providers[0] != provider:
        pytest.skip(f"{provider} is listed but failed to initialise: {gpu.providers}")
    cpu = Detector(untrained_model, providers=["cpu"], conf=0.0001)
    a, b = gpu.predict([image])[0], cpu.predict([image])[0]
    assert abs(len(a) - len(b)) <= max(2, len(b) // 20)
    np.testing.assert_allclose(np.sort(a.confidence)[-5:], np.sort(b.confidence)[-5:], atol=1e-2)


def test_asking_for_a_gpu_without_one_falls_back_to_cpu(untrained_model):
    from inspection.detect.detector import Detector

    if CUDA in available():
        pytest.skip("this machine has CUDA")
    assert Detector(untrained_model, providers=["cuda"]).providers == [CPU]
