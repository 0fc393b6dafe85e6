# The zeroserve control plane image: one image, three roles (gateway, functions, watcher), chosen by the
# command. Build with `skaffold build` (or `docker build -t zeroserve .`).

# Build: install zeroserve and its dependencies into a virtualenv; only the virtualenv moves on.
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml README.md ./
COPY zeroserve ./zeroserve
RUN pip install .

# Run: the virtualenv at the same path (its scripts name /opt/venv/bin/python), the functions, the
# serving templates and resource plans as defaults (the Kubernetes manifests point zeroserve at ConfigMaps instead).
FROM python:3.11-slim
# git: the gateway syncs serving templates from git repositories (docs/templates.md).
RUN apt-get update && apt-get install -y --no-install-recommends git openssh-client && rm -rf /var/lib/apt/lists/*
RUN groupadd --gid 10001 zeroserve \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin zeroserve \
    && mkdir -p /var/lib/zeroserve \
    && chown 10001:10001 /var/lib/zeroserve
COPY --from=build /opt/venv /opt/venv
COPY functions /app/functions
COPY manifests/base/templates /app/manifests/templates
COPY manifests/base/resource-plans.yaml /app/manifests/resource-plans.yaml
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    ZEROSERVE_FUNCTIONS_DIR=/app/functions \
    ZEROSERVE_TEMPLATES_DIR=/app/manifests/templates \
    ZEROSERVE_RESOURCE_PLANS_FILE=/app/manifests/resource-plans.yaml \
    ZEROSERVE_DATA_DIR=/var/lib/zeroserve
WORKDIR /app
USER 10001:10001
EXPOSE 8700
ENTRYPOINT ["zeroserve"]
CMD ["up", "--role", "gateway"]
