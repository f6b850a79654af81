# The inspection service on an NVIDIA GPU: onnxruntime-gpu with the CUDA and TensorRT providers
# (QC_PROVIDERS=auto tries TensorRT, then CUDA, then CPU). TensorRT's engine cache goes to
# $QC_HOME/trt-cache, so keep QC_HOME on a volume: the first start builds engines (minutes),
# later starts reuse them.
#   docker build -f docker/serve-gpu.Dockerfile -t qc-serve-gpu .
#   docker run --gpus all -p 8000:8000 -v qc-home:/var/lib/qc qc-serve-gpu
FROM nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04

ENV DEBIAN_FRONTEND=noninteractive PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    QC_HOME=/var/lib/qc QC_HOST=0.0.0.0 QC_PORT=8000 QC_PROVIDERS=auto
RUN apt-get update && apt-get install -y --no-install-recommends python3 python3-venv \
 && rm -rf /var/lib/apt/lists/* && python3 -m venv /opt/qc
ENV PATH=/opt/qc/bin:$PATH
WORKDIR /src
COPY pyproject.toml README.md ./
COPY inspection ./inspection
COPY serving ./serving
COPY training ./training
COPY qc ./qc
RUN pip install ".[gpu,serve]" tensorrt-cu12 \
 && python -c "import importlib.util as u; assert not u.find_spec('torch'), 'torch must not be in the serving image'" \
 && mkdir -p /var/lib/qc
VOLUME /var/lib/qc
EXPOSE 8000
CMD ["qc", "serve"]
