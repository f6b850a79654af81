# Training: torch (CPU wheels here; use a CUDA base and the default torch wheels on a GPU
# host), Ultralytics, albumentations. Runs offline: models train from model YAMLs.
#   docker build -f docker/train.Dockerfile -t qc-train .
#   docker run -v qc-home:/var/lib/qc -v /data:/data qc-train qc train --recipe /data/recipe.yaml
# BASE as in serve.Dockerfile (official image by digest; a debootstrap base in CI). The training
# stack is pinned here at the versions the test suite ran with; the serving pins come from
# docker/constraints.txt. Needs the PyTorch wheel index, which the CI machines cannot reach.
ARG BASE=python:3.11-slim-bookworm@sha256:2e32f7d302adc1c37428355c1e646897c0c53f4fd60b6a551245fb90ee129f91

FROM ${BASE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
RUN python3 -m venv /opt/qc
ENV PATH=/opt/qc/bin:$PATH
COPY docker/constraints.txt /tmp/constraints.txt
RUN pip install "torch==2.14.1" "torchvision==0.29.1" --index-url https://download.pytorch.org/whl/cpu \
 && pip install --no-deps -r /tmp/constraints.txt \
 && pip install -c /tmp/constraints.txt "ultralytics==8.4.190" "albumentations==2.0.8" "onnx==1.23.2" \
    "onnxslim==0.1.98" \
 # Ultralytics pulls opencv-python; keep the headless build alone in cv2/ (see Makefile).
 && pip uninstall -y opencv-python \
 && pip install --no-deps --force-reinstall -c /tmp/constraints.txt opencv-python-headless
WORKDIR /src
COPY pyproject.toml README.md ./
COPY inspection ./inspection
COPY serving ./serving
# labeling/: the `qc label` commands and the settings of the service's Label Studio webhook;
# the Label Studio SDK itself is imported only by the bridge (labeling/client.py).
COPY labeling ./labeling
COPY training ./training
COPY qc ./qc
COPY recipes ./recipes
RUN pip install --no-deps . && cp -r recipes /opt/qc/recipes

FROM ${BASE}
# libglib2.0-0: OpenCV's and Ultralytics' imports need it.
# hadolint ignore=DL3008
RUN apt-get update && apt-get install -y --no-install-recommends libglib2.0-0 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/qc --shell /usr/sbin/nologin qc \
 && mkdir -p /var/lib/qc && chown qc /var/lib/qc
COPY --from=build /opt/qc /opt/qc
ENV PATH=/opt/qc/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 QC_HOME=/var/lib/qc
USER 10001
WORKDIR /var/lib/qc
VOLUME /var/lib/qc
CMD ["qc", "--help"]
