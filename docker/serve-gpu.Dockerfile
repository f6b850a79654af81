# The inspection service on an NVIDIA GPU: onnxruntime-gpu with the CUDA and TensorRT providers
# (QC_PROVIDERS=auto tries TensorRT, then CUDA, then CPU; a GPU provider named in QC_PROVIDERS
# that does not load stops the start, and auto ending on the CPU shows on /readyz and in
# qc_providers_missing). TensorRT's engine cache goes to $QC_HOME/trt-cache: keep QC_HOME on a
# volume, so only the first start builds engines (minutes).
#   docker build -f docker/serve-gpu.Dockerfile -t qc-serve-gpu .
#   docker run --gpus all -p 8000:8000 -v qc-home:/var/lib/qc qc-serve-gpu
#
# The versions below must match what the pinned onnxruntime-gpu wheel links; the test
# tests/test_docker_gpu_libs.py reads the wheel's ELF NEEDED entries and checks them:
#   onnxruntime-gpu 1.31.1: libcudart.so.13, libcublas(Lt).so.13, libcurand.so.10 (CUDA 13),
#   libcudnn.so.9 (cuDNN 9), libnvinfer.so.10 + libnvonnxparser.so.10 (TensorRT 10).
# CUDA and cuDNN come with the base; TensorRT's libraries are NVIDIA's wheels, which PyPI only
# points to: they install from NVIDIA's own index (pypi.nvidia.com), which the build needs.
ARG CUDA_VERSION=13.0.2
ARG CUDNN_MAJOR=9
ARG BASE=nvidia/cuda:${CUDA_VERSION}-cudnn-runtime-ubuntu24.04
ARG ORT_GPU_VERSION=1.31.1
ARG TENSORRT_VERSION=10.13.3.9
ARG TENSORRT_INDEX=https://pypi.nvidia.com

FROM ${BASE} AS build
ARG ORT_GPU_VERSION
ARG TENSORRT_VERSION
ARG TENSORRT_INDEX
ENV DEBIAN_FRONTEND=noninteractive PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# hadolint ignore=DL3008
RUN apt-get update && apt-get install -y --no-install-recommends python3 python3-venv \
 && rm -rf /var/lib/apt/lists/* && python3 -m venv /opt/qc
ENV PATH=/opt/qc/bin:$PATH
COPY docker/constraints.txt /tmp/constraints.txt
# The CPU image's pins, with onnxruntime-gpu for onnxruntime (they install the same module).
RUN grep -v '^onnxruntime==' /tmp/constraints.txt > /tmp/gpu-constraints.txt \
 && pip install --no-deps -r /tmp/gpu-constraints.txt "onnxruntime-gpu==${ORT_GPU_VERSION}" \
 && pip install --no-deps --extra-index-url "${TENSORRT_INDEX}" "tensorrt-cu13-libs==${TENSORRT_VERSION}"
WORKDIR /src
COPY pyproject.toml README.md ./
COPY inspection ./inspection
COPY serving ./serving
# labeling/: the `qc label` commands and the settings of the service's Label Studio webhook;
# the Label Studio SDK itself is imported only by the bridge (labeling/client.py).
COPY labeling ./labeling
COPY training ./training
COPY qc ./qc
RUN pip install --no-deps . \
 && python -c "import importlib.util as u; assert not u.find_spec('torch'), 'torch must not be in the serving image'"

FROM ${BASE}
ARG CUDA_VERSION
ARG CUDNN_MAJOR
ARG TENSORRT_VERSION
LABEL org.qc.cuda="${CUDA_VERSION}" org.qc.cudnn-major="${CUDNN_MAJOR}" org.qc.tensorrt="${TENSORRT_VERSION}"
ENV DEBIAN_FRONTEND=noninteractive
# hadolint ignore=DL3008
RUN apt-get update && apt-get install -y --no-install-recommends python3 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/qc --shell /usr/sbin/nologin qc \
 && mkdir -p /var/lib/qc && chown qc /var/lib/qc
COPY --from=build /opt/qc /opt/qc
# TensorRT's libraries live in the wheel's folder; ONNX Runtime dlopens them by soname.
ENV PATH=/opt/qc/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \
    LD_LIBRARY_PATH=/opt/qc/lib/python3.12/site-packages/tensorrt_libs \
    QC_HOME=/var/lib/qc QC_HOST=0.0.0.0 QC_PORT=8000 QC_PROVIDERS=auto
USER 10001
WORKDIR /var/lib/qc
VOLUME /var/lib/qc
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=300s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/readyz' % os.environ.get('QC_PORT', '8000'), timeout=2)"]
CMD ["qc", "serve"]
