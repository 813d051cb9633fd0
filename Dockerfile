# fhir-adapter: the FHIR facade, served by uvicorn workers as a non-root user.
# Its working directory, /var/lib/fhir-adapter, is a volume: export jobs and their files,
# the change journal, subscriptions and relative audit files are kept there.
#   docker build -t fhir-adapter .
#   docker run -p 8080:8080 fhir-adapter    # embedded sandbox sources, at localhost:8080
# With a configuration and secrets: README.md, "Docker".
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY adapter ./adapter
COPY mappings ./mappings
RUN python -m pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
COPY --from=build /wheels /wheels
RUN python -m pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels \
 && useradd --system --uid 10001 --no-create-home fhir \
 && mkdir -p /var/lib/fhir-adapter && chown 10001:10001 /var/lib/fhir-adapter
WORKDIR /var/lib/fhir-adapter
VOLUME ["/var/lib/fhir-adapter"]
USER 10001
EXPOSE 8080
# Whether the process answers (it asks no vendor: a vendor outage restarts nothing).
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4)"]
ENTRYPOINT ["fhir-adapter", "serve", "--host", "0.0.0.0", "--port", "8080"]
CMD ["--workers", "1"]
