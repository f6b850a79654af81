"""A Triton model repository from the registry (`qc models triton`), as a specification: the
config is valid for Triton's own ModelConfig schema, batches when the model can, names the
tensors and instance groups, carries the ONNX metadata, and holds the registered file byte for
byte under the Triton version that matches the registry version. And the ONNX metadata reader
the remote backend relies on gives what ONNX Runtime gives."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import onnxruntime as ort
import pytest

from inspection.detect.onnx_file import read_metadata
from inspection.errors import ModelError
from inspection.models.registry import Registry
from inspection.models.triton_repo import InstanceKind, write_version

QC = Path(sys.executable).with_name("qc")


def triton_model_config():
    """Triton's ModelConfig message, from the schema tritonclient ships (without grpc)."""
    import tritonclient

    path = Path(tritonclient.__file__).parent / "grpc" / "model_config_pb2.py"
    if not path.is_file():
        pytest.skip("tritonclient without its model_config_pb2 schema")
    spec = importlib.util.spec_from_file_location("triton_model_config_pb2", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.ModelConfig()


def parse_config(path: Path):
    from google.protobuf import text_format

    return text_format.Parse(path.read_text(), triton_model_config())  # strict: unknown keys fail


@pytest.fixture
def registry(tmp_path) -> Registry:
    return Registry(tmp_path / "models")


def test_onnx_metadata_is_read_without_an_engine(untrained_model, trained_model):
    for path in (untrained_model, trained_model.dynamic):
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        assert read_metadata(path) == dict(session.get_modelmeta().custom_metadata_map)
    assert "qc_data_hash" in read_metadata(trained_model.dynamic)  # qc's lineage is there too


def test_a_file_that_is_not_onnx_is_a_model_error(tmp_path):
    bogus = tmp_path / "bogus.onnx"
    bogus.write_bytes(b"\xff" * 64)
    with pytest.raises(ModelError, match=r"bogus\.onnx: not an ONNX file"):
        read_metadata(bogus)
    with pytest.raises(ModelError, match="no such model file"):
        read_metadata(tmp_path / "missing.onnx")


def test_a_dynamic_batch_model_gets_dynamic_batching_and_instance_groups(registry, trained_model, tmp_path):
    entry = registry.add("pcb", trained_model.dynamic)
    written = write_version(entry, tmp_path / "repo", max_batch=8, instances=2, kind=InstanceKind.GPU)

    assert written.config == tmp_path / "repo" / "pcb" / "config.pbtxt"
    assert written.model == tmp_path / "repo" / "pcb" / "1" / "model.onnx"
    assert written.model.read_bytes() == trained_model.dynamic.read_bytes()
    assert written.notes == []
    config = parse_config(written.config)
    assert config.name == "pcb" and config.platform == "onnxruntime_onnx"
    assert config.max_batch_size == 8
    assert config.dynamic_batching.max_queue_delay_microseconds == 3000
    assert list(config.dynamic_batching.preferred_batch_size) == [4, 8]
    assert [(g.count, g.kind) for g in config.instance_group] == [(2, config.instance_group[0].KIND_GPU)]
    assert config.version_policy.HasField("all")
    (tensor_in,) = config.input
    assert tensor_in.name == "images" and list(tensor_in.dims) == [3, -1, -1]  # batch dim is Triton's
    assert tensor_in.data_type == 11  # TYPE_FP32 in Triton's DataType enum
    assert [o.name for o in config.output] == ["output0"]
    parameters = {key: value.string_value for key, value in config.parameters.items()}
    assert parameters == read_metadata(trained_model.dynamic)  # names, imgsz, stride, qc_* lineage


def test_a_static_batch_model_is_written_without_batching_and_says_why(registry, untrained_model, tmp_path):
    entry = registry.add("line", untrained_model)
    written = write_version(entry, tmp_path / "repo", kind=InstanceKind.CPU)

    config = parse_config(written.config)
    assert config.max_batch_size == 0 and not config.HasField("dynamic_batching")
    assert list(config.input[0].dims) == [1, 3, 160, 160]  # the whole shape, batch included
    assert config.instance_group[0].kind == config.instance_group[0].KIND_CPU
    assert len(written.notes) == 1 and "qc export --dynamic" in written.notes[0]


def test_each_registry_version_becomes_the_triton_version_of_its_number(registry, trained_model, tmp_path):
    registry.add("pcb", trained_model.dynamic)
    second = registry.add("pcb", trained_model.dynamic)
    write_version(second, tmp_path / "repo")
    write_version(registry.get("pcb", "v1"), tmp_path / "repo")

    folder = tmp_path / "repo" / "pcb"
    assert sorted(p.name for p in folder.iterdir() if p.is_dir()) == ["1", "2"]
    index = json.loads((folder / "qc-versions.json").read_text())
    assert {number: row["ref"] for number, row in index.items()} == {"1": "pcb@v1", "2": "pcb@v2"}
    assert not list(folder.rglob(".*incoming*"))  # nothing half-written left for Triton to see


def test_a_version_with_other_tensors_is_refused_under_the_same_name(
        registry, trained_model, untrained_model, tmp_path):
    write_version(registry.add("pcb", trained_model.dynamic), tmp_path / "repo")
    other = registry.add("pcb", untrained_model)
    with pytest.raises(ModelError, match="differ from version 1"):
        write_version(other, tmp_path / "repo")
    assert not (tmp_path / "repo" / "pcb" / "2").exists()


def test_the_cli_writes_the_production_version(qc_home, untrained_model, tmp_path):
    import subprocess

    registry = Registry(qc_home / "models")
    registry.add("default", untrained_model)
    registry.set_production("default", "v1")
    result = subprocess.run([str(QC), "models", "triton", "default", str(tmp_path / "repo"),
                             "--kind", "cpu", "--instances", "2"], check=False, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "Triton version 1" in result.stdout
    assert "qc export --dynamic" in result.stderr  # the static model cannot be batched: said
    assert parse_config(tmp_path / "repo" / "default" / "config.pbtxt").instance_group[0].count == 2

    refused = subprocess.run([str(QC), "models", "triton", "default", str(tmp_path / "repo"),
                              "--kind", "tpu"], check=False, capture_output=True, text=True)
    assert refused.returncode == 2 and "--kind 'tpu': use gpu or cpu" in refused.stderr
