# The inspection service on CPU: ONNX Runtime, FastAPI, no torch (the image stays small and a
# line PC never installs what it does not run).
#   docker build -f docker/serve.Dockerfile -t qc-serve .
#   docker run -p 8000:8000 -v qc-home:/var/lib/qc qc-serve
# BASE is any Debian-like image with python3 (3.11+) and python3-venv on PATH as `python3`.
# The default is the official image, pinned by the digest published for it (not verifiable from
# the build machines, which cannot reach Docker Hub; re-pin with
# `docker buildx imagetools inspect python:3.11-slim-bookworm`). CI builds FROM a Debian base
# made with debootstrap (tests/test_docker_image.py): --build-arg BASE=local/python:3.11.
ARG BASE=python:3.11-slim-bookworm@sha256:2e32f7d302adc1c37428355c1e646897c0c53f4fd60b6a551245fb90ee129f91

FROM ${BASE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
RUN python3 -m venv /opt/qc
ENV PATH=/opt/qc/bin:$PATH
# Dependencies first, pinned: a change to the code rebuilds only the layers below.
COPY docker/constraints.txt /tmp/constraints.txt
RUN pip install --no-deps -r /tmp/constraints.txt
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
 && pip check \
 && python -c "import importlib.util as u; assert not u.find_spec('torch'), 'torch must not be in the serving image'"

FROM ${BASE}
COPY --from=build /opt/qc /opt/qc
ENV PATH=/opt/qc/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \
    QC_HOME=/var/lib/qc QC_HOST=0.0.0.0 QC_PORT=8000
RUN useradd --system --uid 10001 --home-dir /var/lib/qc --shell /usr/sbin/nologin qc \
 && mkdir -p /var/lib/qc && chown qc /var/lib/qc
USER 10001
WORKDIR /var/lib/qc
VOLUME /var/lib/qc
EXPOSE 8000
# Follows QC_PORT (docker run -e QC_PORT=9000 ... stays healthy); ready = model loaded, database up.
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/readyz' % os.environ.get('QC_PORT', '8000'), timeout=2)"]
CMD ["qc", "serve"]
