# The MIS image: the service, plus the example DICOM statistics MAP the chart serves by default.
#   docker build -t registry.example.org/monai-inference-service:0.1.0 .
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY mis_core mis_core
COPY mis_adapters mis_adapters
COPY mis_app mis_app
RUN python -m venv /opt/mis \
 && /opt/mis/bin/pip install --no-cache-dir ".[example]"

FROM python:3.11-slim
RUN groupadd --gid 10001 mis && useradd --uid 10001 --gid mis --no-create-home --shell /usr/sbin/nologin mis
COPY --from=build /opt/mis /opt/mis
COPY examples /app/examples
ENV PATH=/opt/mis/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
USER 10001:10001
WORKDIR /app
EXPOSE 8000
ENTRYPOINT ["mis"]
CMD ["serve", "--host", "0.0.0.0"]
