"""The GPU image's CUDA, cuDNN and TensorRT match what its onnxruntime-gpu links, as a
specification: the pinned wheel (ORT_GPU_VERSION in docker/serve-gpu.Dockerfile) is downloaded
into a temporary folder (~250 MB: slow; nothing is cached outside it), the ELF NEEDED entries
of its provider libraries are read with readelf, and their major versions are checked against
the CUDA version of the base image, its cuDNN, and the TensorRT the image installs. The CUDA 12
base the image had before would fail here: the wheel links libcudart.so.13."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
GPU_DOCKERFILE = REPO / "docker" / "serve-gpu.Dockerfile"


def build_args(path: Path) -> dict[str, str]:
    """ARG NAME=default values, ${OTHER} expanded."""
    values: dict[str, str] = {}
    for name, default in re.findall(r"^ARG\s+(\w+)=(\S+)\s*$", path.read_text(), re.MULTILINE):
        values.setdefault(name, re.sub(r"\$\{(\w+)\}", lambda m: values[m.group(1)], default))
    return values


def needed(library: bytes, scratch: Path) -> list[str]:
    path = scratch / "lib.so"
    path.write_bytes(library)
    out = subprocess.run(["readelf", "-d", str(path)], capture_output=True, text=True, check=True).stdout
    return re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", out)


def majors(names: list[str], stem: str) -> set[int]:
    return {int(m.group(1)) for name in names if (m := re.fullmatch(rf"{stem}\.so\.(\d+)", name))}


def test_the_declared_versions_are_consistent():
    args = build_args(GPU_DOCKERFILE)
    assert args["BASE"] == f"nvidia/cuda:{args['CUDA_VERSION']}-cudnn-runtime-ubuntu24.04"
    assert re.fullmatch(r"\d+\.\d+\.\d+", args["ORT_GPU_VERSION"])  # pinned, not a range


@pytest.mark.slow
def test_the_gpu_base_provides_what_the_pinned_wheel_links(tmp_path):
    if shutil.which("readelf") is None:
        pytest.skip("readelf is not installed (binutils)")
    args = build_args(GPU_DOCKERFILE)
    download = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
         "--python-version", "3.12", "--platform", "manylinux_2_28_x86_64", "-d", str(tmp_path),
         f"onnxruntime-gpu=={args['ORT_GPU_VERSION']}"], capture_output=True, text=True, check=False)
    if download.returncode != 0:
        pytest.skip(f"cannot download onnxruntime-gpu=={args['ORT_GPU_VERSION']}: {download.stderr[-400:]}")
    (wheel,) = tmp_path.glob("onnxruntime_gpu-*.whl")
    libraries: dict[str, list[str]] = {}
    with zipfile.ZipFile(wheel) as archive:
        for name in archive.namelist():
            if re.search(r"capi/libonnxruntime_providers_(cuda|tensorrt)\.so$", name):
                libraries[Path(name).name] = needed(archive.read(name), tmp_path)
    cuda, tensorrt = libraries["libonnxruntime_providers_cuda.so"], libraries["libonnxruntime_providers_tensorrt.so"]
    print({name: [n for n in libs if not n.startswith(("libc.", "libm.", "libdl", "librt", "libpthread",
                                                          "libgcc", "libstdc", "ld-linux"))]
           for name, libs in libraries.items()})

    cuda_major = int(args["CUDA_VERSION"].split(".")[0])
    assert majors(cuda + tensorrt, "libcudart") == {cuda_major}, "the base's CUDA runtime"
    assert majors(cuda + tensorrt, "libcublas") == {cuda_major}, "cuBLAS ships with CUDA, same major"
    assert majors(tensorrt, "libcudnn") <= {int(args["CUDNN_MAJOR"])}, "the base's cuDNN"
    assert majors(tensorrt, "libnvinfer") == {int(args["TENSORRT_VERSION"].split(".")[0])}, "TensorRT"
    assert majors(tensorrt, "libnvonnxparser") == {int(args["TENSORRT_VERSION"].split(".")[0])}
    # The TensorRT wheel installed is the one built for this CUDA major.
    assert f"tensorrt-cu{cuda_major}-libs==" in GPU_DOCKERFILE.read_text().replace("${TENSORRT_VERSION}", "")
