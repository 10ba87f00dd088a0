# The solicit image: one image for `solicit worker`, `solicit bridge` and `solicit sellers`, and for the lab's
# `solicit sandbox` that docker-compose.yml runs next to them. Build: `docker build -t solicit:0.1.0 .`
# Choices and usage: docs/operations.md#containers. tests/unit/test_containers.py checks this file against the
# code (entry point, settings, copied files, pinned base) and lints it with hadolint (`make test`).

# Pinned to a full patch release; Debian bookworm's glibc (2.36) runs the manylinux_2_28 wheels (rocksdict).
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

# --- build: the project's wheel, installed with its runtime dependencies into a virtual environment ---------------
FROM ${PYTHON_IMAGE} AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /src
RUN python -m venv /opt/solicit

# The runtime dependencies first, in their own layer (rebuilt only when pyproject.toml changes): exactly
# [project].dependencies, plus the optional extras named in EXTRAS (comma separated, e.g. for a Kafka
# authentication plug-in), never the dev extras. On linux/amd64 every runtime dependency is a manylinux wheel
# (rocksdict, faust-streaming, aiokafka, cryptography, ...), so the image needs no compiler.
ARG EXTRAS=""
COPY pyproject.toml ./
RUN python -c "import os, tomllib; \
project = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
extras = [name.strip() for name in os.environ.get('EXTRAS', '').split(',') if name.strip()]; \
assert 'dev' not in extras, 'the image never installs the dev extras'; \
print('\n'.join(project['dependencies'] + [r for name in extras for r in project['optional-dependencies'][name]]))" \
        > requirements.txt \
    && /opt/solicit/bin/pip install --no-cache-dir --requirement requirements.txt

# Then the project itself. The wheel holds every package of [tool.setuptools.packages.find], the lab (devstack)
# included: `solicit` loads every command of the `solicit.commands` entry points at start, so the lab's commands
# must be importable, and `solicit sandbox` needs nothing beyond the runtime dependencies.
COPY README.md LICENSE ./
COPY statemachine ./statemachine
COPY connectors ./connectors
COPY streams ./streams
COPY devstack ./devstack
RUN /opt/solicit/bin/pip wheel --no-cache-dir --no-deps --wheel-dir /tmp/dist . \
    && /opt/solicit/bin/pip install --no-cache-dir --no-deps /tmp/dist/solicit-*.whl \
    && /opt/solicit/bin/pip check \
    && /opt/solicit/bin/solicit --version

# --- runtime: the virtual environment on the same base, a non-root user, the state directory as a volume ----------
FROM ${PYTHON_IMAGE} AS runtime

# Keep in step with [project].version (the test checks the default).
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="solicit" \
      org.opencontainers.image.description="Asks every Amazon buyer once for a review and seller feedback (SP-API Solicitations): SQS bridge, Faust worker, sellers registry." \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.documentation="docs/operations.md#containers"

ENV PATH="/opt/solicit/bin:${PATH}" \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    SOLICIT_WORKER__DATA_DIR=/var/lib/solicit

RUN groupadd --system --gid 10001 solicit \
    && useradd --system --uid 10001 --gid solicit --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin solicit \
    && install --directory --owner=solicit --group=solicit --mode=0750 /var/lib/solicit

COPY --from=build /opt/solicit /opt/solicit

# Numeric, so that Kubernetes' runAsNonRoot can verify it.
USER 10001:10001
WORKDIR /var/lib/solicit
# The worker's RocksDB tables and due index (<data dir>/worker-<SOLICIT_WORKER__ID>). Rebuilt from the changelog
# topics when lost, but a kept volume makes restarts fast. One volume per worker: RocksDB locks its directory.
VOLUME ["/var/lib/solicit"]

# The worker serves its web API, /metrics and /healthz on 6066 (SOLICIT_WEB__PORT). No HEALTHCHECK in the image: the
# same image runs the bridge, which serves no HTTP; compose and Kubernetes probe the workers' /healthz and /readyz.
# A process that can no longer work exits (1, or 75 after a failed delivery: Kafka redelivers) and is restarted.
EXPOSE 6066
ENTRYPOINT ["solicit"]
CMD ["worker"]
