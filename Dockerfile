# The MIS image: the service, plus the example DICOM statistics MAP the chart serves by default.
#   docker build -t registry.example.org/monai-inference-service:0.1.0 .
# BASE is any Debian-like image with Python 3.11+ and python3 -m venv (default: the official
# Python slim image). CI builds on a Debian base it makes itself: nox -s image.
ARG BASE=python:3.11-slim

FROM ${BASE} AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY mis_core mis_core
COPY mis_adapters mis_adapters
COPY mis_app mis_app
RUN python3 -m venv /opt/mis \
 && /opt/mis/bin/pip install --no-cache-dir ".[example]" \
 && /opt/mis/bin/pip uninstall -y -q pip setuptools

FROM ${BASE}
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="MONAI Inference Service" \
      org.opencontainers.image.description="Runs a MONAI Application Package behind a REST API" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --gid 10001 mis \
 && useradd --uid 10001 --gid mis --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin mis
COPY --from=build /opt/mis /opt/mis
COPY examples /app/examples
ENV PATH=/opt/mis/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
USER 10001:10001
WORKDIR /app
EXPOSE 8000
ENTRYPOINT ["mis"]
CMD ["serve", "--host", "0.0.0.0"]
