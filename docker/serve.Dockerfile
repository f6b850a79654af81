# The inspection service on CPU: ONNX Runtime, FastAPI, no torch (the image stays small and a
# line PC never installs what it does not run).
#   docker build -f docker/serve.Dockerfile -t qc-serve .
#   docker run -p 8000:8000 -v qc-home:/var/lib/qc qc-serve
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    QC_HOME=/var/lib/qc QC_HOST=0.0.0.0 QC_PORT=8000
WORKDIR /src
COPY pyproject.toml README.md ./
COPY inspection ./inspection
COPY serving ./serving
COPY training ./training
COPY qc ./qc
RUN pip install ".[cpu,serve]" \
 && python -c "import importlib.util as u; assert not u.find_spec('torch'), 'torch must not be in the serving image'" \
 && useradd --system --home-dir /var/lib/qc qc && mkdir -p /var/lib/qc && chown qc /var/lib/qc
USER qc
VOLUME /var/lib/qc
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/readyz').status != 200)"
CMD ["qc", "serve"]
