# syntax=docker/dockerfile:1
# MESP operator image: `mesp operator` with the built-in default model artifact.
# Build: docker build -t mesp:dev .   (hack/e2e-kind.sh builds it and loads it into kind)
# It cannot be built on the project's CI machines (no Docker engine there); the kind e2e exercises it,
# and tests/unit/test_packaging.py checks the wheel `pip install .` makes from this build context.

ARG PYTHON_VERSION=3.11
ARG TORCH_VERSION=2.13.0
# Extras to install with MESP: none for the operator image; "train,ray" for the image a KubeRay
# RayJob trains with (manifests/kuberay/rayjob-train.yaml).
ARG MESP_EXTRAS=""

# --- build: a self-contained virtualenv in /opt/mesp ------------------------------------------------
FROM python:${PYTHON_VERSION}-slim AS build
ARG TORCH_VERSION
ARG MESP_EXTRAS
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/mesp
ENV PATH=/opt/mesp/bin:$PATH
# CPU-only torch first: PyPI's default Linux wheel pulls several GB of CUDA libraries the operator
# never uses. The project install below then finds torch already satisfied.
RUN pip install --index-url https://download.pytorch.org/whl/cpu "torch==${TORCH_VERSION}"
WORKDIR /src
COPY pyproject.toml README.md ./
COPY mesp_core ./mesp_core
COPY operator ./operator
# A regular (non-editable) install: the package, its data (the default model) and the `mesp` script
# all land in the virtualenv, so the runtime stage needs nothing from /src.
RUN pip install ".${MESP_EXTRAS:+[$MESP_EXTRAS]}" \
 && python -c "from mesp_core.forecasting.model import default_model_path; import mesp_core; mesp_core.load_model(default_model_path()); print('default model loads')"

# --- runtime ----------------------------------------------------------------------------------------
FROM python:${PYTHON_VERSION}-slim
# Fixed non-root IDs, matching the chart's podSecurityContext (runAsUser/runAsGroup 10001).
# The chart mounts the root filesystem read-only with an emptyDir at /tmp: HOME and numba's JIT
# cache (tslearn) point there.
RUN groupadd --system --gid 10001 mesp \
 && useradd --system --uid 10001 --gid mesp --home-dir /tmp --no-create-home --shell /usr/sbin/nologin mesp
COPY --from=build /opt/mesp /opt/mesp
ENV PATH=/opt/mesp/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    OMP_NUM_THREADS=1 \
    NUMBA_CACHE_DIR=/tmp/numba-cache
USER 10001:10001
# 9102: /metrics, 8081: kopf's /healthz (the chart's defaults).
EXPOSE 9102 8081
ENTRYPOINT ["mesp", "operator"]
CMD ["--metrics-port=9102", "--liveness-endpoint=http://0.0.0.0:8081/healthz"]
