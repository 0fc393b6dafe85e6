# The zeroserve control plane image: one image, three roles (gateway, functions, watcher), chosen by the
# command. Build with `skaffold build` (or `docker build -t zeroserve .`).

# Build: install zeroserve with its server extra into a virtualenv; only the virtualenv moves on. The
# wheel carries the functions, the serving templates and the resource plans (the Kubernetes manifests
# point zeroserve at ConfigMaps of the templates and plans instead). The control plane runs no model
# itself (KServe does): no torch extra. The versions are those the tests passed with (the lock as constraints).
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY requirements/lock.txt ./requirements/lock.txt
COPY zeroserve ./zeroserve
RUN pip install --constraint requirements/lock.txt '.[server]'

# Run: the virtualenv at the same path (its scripts name /opt/venv/bin/python).
FROM python:3.11-slim
# git: the gateway syncs serving templates from git repositories (docs/templates.md).
RUN apt-get update && apt-get install -y --no-install-recommends git openssh-client && rm -rf /var/lib/apt/lists/*
RUN groupadd --gid 10001 zeroserve \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin zeroserve \
    && mkdir -p /var/lib/zeroserve \
    && chown 10001:10001 /var/lib/zeroserve
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    ZEROSERVE_DATA_DIR=/var/lib/zeroserve
WORKDIR /app
USER 10001:10001
EXPOSE 8700
ENTRYPOINT ["zeroserve"]
CMD ["up", "--role", "gateway"]
