# NetScope's image for deploy/compose.yaml (and any container platform): the package and its
# console script, run as an unprivileged user. Built, not run, on the development machines
# (no Docker engine there): docs/deploy.md.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install . && useradd --system --uid 10001 --home /var/lib/netscope netscope \
    && mkdir -p /var/lib/netscope && chown netscope /var/lib/netscope
USER netscope
WORKDIR /var/lib/netscope
EXPOSE 8080
ENTRYPOINT ["netscope"]
CMD ["--help"]
