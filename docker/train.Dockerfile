# Training: torch (CPU wheels here; use a CUDA base and the default torch wheels on a GPU
# host), Ultralytics, albumentations. Runs offline: models train from model YAMLs.
#   docker build -f docker/train.Dockerfile -t qc-train .
#   docker run -v qc-home:/var/lib/qc -v /data:/data qc-train qc train --recipe /data/recipe.yaml
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 QC_HOME=/var/lib/qc
RUN apt-get update && apt-get install -y --no-install-recommends libglib2.0-0 \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY inspection ./inspection
COPY serving ./serving
COPY training ./training
COPY qc ./qc
COPY recipes ./recipes
RUN pip install "torch<=2.14.1" "torchvision<=0.29.1" --index-url https://download.pytorch.org/whl/cpu \
 && pip install ".[cpu,train]" \
 # Ultralytics pulls opencv-python; keep the headless build alone in cv2/ (see Makefile).
 && pip uninstall -y opencv-python \
 && pip install --no-deps --force-reinstall "opencv-python-headless==$(python -c 'import importlib.metadata as m; print(m.version("opencv-python-headless"))')"
VOLUME /var/lib/qc
CMD ["qc", "--help"]
