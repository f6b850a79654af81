"""A GPU provider that did not load, as a specification. ONNX Runtime falls back to the CPU
without a word; the service does not: a GPU provider named in QC_PROVIDERS that did not load
stops the start with a message naming the fix, and QC_PROVIDERS=auto ending on the CPU in a
GPU build stays ready (a slow line beats a stopped one) but says so on /readyz and in
`qc_providers_missing`, which the plant's alert rule watches (docker/prometheus/alerts.yml).

No GPU machine is lent here, so a GPU build is simulated the way it fails in the field: this
ONNX Runtime is told it offers TensorRT and CUDA, is asked for them, and falls back to the CPU
exactly as onnxruntime-gpu does when libcudart or libnvinfer cannot be loaded."""

from __future__ import annotations

import pytest

from inspection.detect import providers
from inspection.errors import ModelError
from tests.service_harness import running

GPU_BUILD = [providers.TENSORRT, providers.CUDA, providers.CPU]


@pytest.fixture
def gpu_build_without_gpu(monkeypatch):
    monkeypatch.setattr(providers, "_build_providers", lambda: list(GPU_BUILD))


def test_a_named_gpu_provider_that_did_not_load_stops_the_start(gpu_build_without_gpu, untrained_model, tmp_path):
    with pytest.raises(ModelError) as refused, running(tmp_path / "home", untrained_model, providers="cuda,cpu"):
        pass
    message = str(refused.value)
    assert "QC_PROVIDERS=cuda,cpu: CUDAExecutionProvider did not load" in message
    assert "running on CPUExecutionProvider" in message and "QC_PROVIDERS=cpu" in message


def test_auto_ending_on_the_cpu_is_ready_but_says_so(gpu_build_without_gpu, untrained_model, tmp_path):
    with running(tmp_path / "home", untrained_model, providers="auto") as service:
        ready = service.client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["missing_providers"] == [providers.TENSORRT, providers.CUDA]
        text = service.client.get("/metrics", headers=service.admin).text
        assert f'qc_providers_missing{{provider="{providers.CUDA}"}} 1.0' in text
        assert f'qc_providers_missing{{provider="{providers.TENSORRT}"}} 1.0' in text


def test_a_cpu_service_misses_nothing(untrained_model, tmp_path):
    with running(tmp_path / "home", untrained_model, providers="cpu") as service:
        assert service.client.get("/readyz").json()["missing_providers"] == []
        assert "qc_providers_missing{" not in service.client.get("/metrics", headers=service.admin).text
