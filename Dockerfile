# syntax=docker/dockerfile:1
# Every Distretto service, one recipe. Build from the repository root (the uv workspace):
#   docker build --build-arg SERVICE=membership --build-arg PORT=8001 -t distretto-membership .
# SERVICE is a folder of services/ (its project is distretto-<SERVICE>), PORT the port its
# Settings listen on; docker-compose.yml passes both (tests/platform/test_compose.py checks them).
# SERVICE=dev builds the development tools (the mail catcher of the compose file), never a service.
FROM python:3.11-slim

ARG SERVICE
ARG PORT
ARG UV_VERSION=0.13.9
RUN test -n "${SERVICE}" -a -n "${PORT}" || { echo "build with --build-arg SERVICE=<name> --build-arg PORT=<port>"; exit 1; }
RUN pip install --no-cache-dir "uv==${UV_VERSION}"

ENV UV_CACHE_DIR=/opt/uv-cache \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    PYTHONUNBUFFERED=1 \
    DISTRETTO_DATA_DIR=/data \
    SERVICE_MODULE=${SERVICE} \
    SERVICE_PORT=${PORT}

WORKDIR /app
# The workspace: its root project, the lock, the backbone and every member (uv needs them all to
# resolve); only the service's own runtime dependencies are installed (no development group).
COPY pyproject.toml uv.lock ./
COPY shared shared
COPY dev dev
COPY services services
RUN --mount=type=cache,target=/opt/uv-cache \
    uv sync --frozen --no-dev --package "distretto-${SERVICE}"

RUN useradd --system --create-home --uid 10001 distretto \
    && mkdir -p /data \
    && chown distretto /data
USER distretto

EXPOSE ${PORT}
CMD ["sh","-c","exec uv run --no-sync python -m \"${SERVICE_MODULE}\" serve --host 0.0.0.0 --port \"${SERVICE_PORT}\""]
