"""A Triton model repository from registry versions: `qc models triton pcb@v3 /srv/triton`.

Example::

    from inspection.models.triton_repo import InstanceKind, write_version

    written = write_version(registry.resolve("pcb@v3"), Path("/srv/triton"), max_batch=8,
                            instances=2, kind=InstanceKind.GPU)
    # /srv/triton/pcb/config.pbtxt, /srv/triton/pcb/3/model.onnx, /srv/triton/pcb/qc-versions.json

Layout, as Triton reads it: `<root>/<name>/config.pbtxt` and one numbered folder per version
holding `model.onnx`. Registry version vN becomes Triton version N, so the service
(`QC_BACKEND=triton`) asks Triton for exactly the version qc promoted; `version_policy: all`
keeps every exported version loadable, so a rollback needs no new export.

The config names the platform (onnxruntime_onnx), the tensors, `max_batch_size` and
`dynamic_batching` (Triton's own micro-batcher, like QC_MAX_BATCH / QC_MAX_WAIT_MS here) and
the instance groups (how many copies on which devices). Triton can batch only a model whose
batch dimension is dynamic: a static-batch export (the CPU default of `qc export`) is written
with `max_batch_size: 0` and no dynamic batching, and `Written.notes` says to export again
with `--dynamic`. The ONNX metadata (class names, imgsz, stride, qc's lineage) goes into the
config's `parameters`, where TritonBackend finds it when it has no copy of the file.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from inspection.detect.backend import OrtBackend, TensorSpec
from inspection.durable import fsync_file, write_bytes_atomic, write_json_atomic
from inspection.errors import ConfigError, ModelError
from inspection.models.registry import ModelVersion

PLATFORM = "onnxruntime_onnx"
_TYPES = {"float": "TYPE_FP32", "float16": "TYPE_FP16", "double": "TYPE_FP64", "uint8": "TYPE_UINT8",
          "int8": "TYPE_INT8", "int32": "TYPE_INT32", "int64": "TYPE_INT64", "bool": "TYPE_BOOL"}


class InstanceKind(StrEnum):
    """Where Triton runs the copies of a model (its instance_group kind)."""

    GPU = "gpu"
    CPU = "cpu"


@dataclass
class Written:
    config: Path
    model: Path
    version: int
    notes: list[str] = field(default_factory=list)


def _text(value: str) -> str:
    """A protobuf text-format string literal (UTF-8 passes through; controls are escaped)."""
    escaped = []
    for char in value:
        if char in '"\\':
            escaped.append("\\" + char)
        elif char == "\n":
            escaped.append("\\n")
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            escaped.append(f"\\{ord(char):03o}")
        else:
            escaped.append(char)
    return '"' + "".join(escaped) + '"'


def _tensor(spec: TensorSpec, dims: tuple[int | None, ...]) -> str:
    if spec.dtype not in _TYPES:
        raise ModelError(f"tensor {spec.name!r} is {spec.dtype}, which Triton's ONNX backend "
                         "is not given by qc; export the model again with qc export")
    shown = ", ".join(str(-1 if d is None else d) for d in dims)
    return (f"  {{\n    name: {_text(spec.name)}\n    data_type: {_TYPES[spec.dtype]}\n"
            f"    dims: [ {shown} ]\n  }}")


def triton_version(entry: ModelVersion) -> int:
    number = entry.version.removeprefix("v")
    if not number.isdigit():
        raise ConfigError(f"registry version {entry.version!r} is not vN; Triton numbers versions")
    return int(number)


def config_text(name: str, input_spec: TensorSpec, output_spec: TensorSpec,
                metadata: dict[str, str], *, max_batch: int, instances: int, kind: InstanceKind,
                queue_delay_us: int) -> tuple[str, list[str]]:
    """config.pbtxt for one model, and notes for the user (why it cannot batch, say)."""
    notes: list[str] = []
    batching = input_spec.shape[0] is None and output_spec.shape[0] is None
    if batching:
        head = f"max_batch_size: {max_batch}\n"
        in_dims, out_dims = input_spec.shape[1:], output_spec.shape[1:]
    else:
        head = "max_batch_size: 0\n"
        in_dims, out_dims = input_spec.shape, output_spec.shape
        notes.append(f"the model's batch is fixed at {input_spec.shape[0]}: Triton cannot batch "
                     "frames of several lines into one run; export with qc export --dynamic "
                     "for a GPU server")
    parts = [
        ("# Written by qc models triton: the ONNX file's own metadata is in `parameters`.\n"
         f"name: {_text(name)}\nplatform: {_text(PLATFORM)}\n{head}"),
        "input [\n" + _tensor(input_spec, in_dims) + "\n]\n",
        "output [\n" + _tensor(output_spec, out_dims) + "\n]\n",
        "version_policy: { all: {} }\n",
    ]
    if batching:
        preferred = sorted({n for n in (max_batch // 2, max_batch) if n > 1})
        parts.append("dynamic_batching {\n"
                     f"  preferred_batch_size: [ {', '.join(map(str, preferred))} ]\n"
                     f"  max_queue_delay_microseconds: {queue_delay_us}\n}}\n")
    parts.append(f"instance_group [\n  {{\n    count: {instances}\n"
                 f"    kind: KIND_{kind.value.upper()}\n  }}\n]\n")
    parts.extend(f"parameters {{\n  key: {_text(key)}\n"
                 f"  value: {{ string_value: {_text(metadata[key])} }}\n}}\n" for key in sorted(metadata))
    return "".join(parts), notes


def write_version(entry: ModelVersion, root: Path, *, max_batch: int = 8, instances: int = 1,
                  kind: InstanceKind = InstanceKind.GPU, queue_delay_us: int = 3000) -> Written:
    """Add one registry version to the repository at `root` (made if missing); the config is
    rewritten for it. A version whose tensors differ from the ones already there is refused:
    Triton holds one config for all versions of a model."""
    if max_batch < 1 or instances < 1 or queue_delay_us < 0:
        raise ConfigError("--max-batch and --instances must be at least 1, --queue-delay-us 0 or more")
    if entry.goodonly:
        raise ModelError(f"{entry.ref} is a good-only model (.qcgood), not a network: Triton cannot run it; "
                         "the service runs it in its own process whatever QC_BACKEND says")
    backend = OrtBackend.open(entry.model_path, providers=["cpu"])
    text, notes = config_text(entry.name, backend.input, backend.output, backend.metadata,
                              max_batch=max_batch, instances=instances, kind=kind,
                              queue_delay_us=queue_delay_us)
    folder = Path(root) / entry.name
    config, index = folder / "config.pbtxt", folder / "qc-versions.json"
    known = json.loads(index.read_text()) if index.is_file() else {}
    tensors = {"input": [backend.input.name, backend.input.dtype, list(backend.input.shape)],
               "output": [backend.output.name, backend.output.dtype, list(backend.output.shape)]}
    for number, other in known.items():
        if other["tensors"] != tensors:
            raise ModelError(
                f"{entry.ref}: its tensors {tensors} differ from version {number}'s "
                f"{other['tensors']} in {folder}; Triton keeps one config per model, so write it "
                "under another model name (register it under a new name) or into a new repository")
    number = triton_version(entry)
    target = folder / str(number) / "model.onnx"
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(".model.onnx.incoming")
    shutil.copyfile(entry.model_path, partial)
    fsync_file(partial)
    partial.replace(target)  # Triton polling the repository never sees half a file
    known[str(number)] = {"ref": entry.ref, "sha256": entry.card.get("sha256"), "tensors": tensors}
    write_json_atomic(index, known)
    write_bytes_atomic(config, text.encode())
    return Written(config, target, number, notes)
