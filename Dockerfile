# syntax=docker/dockerfile:1
# Glimpse: `docker compose up` (with Redis), or `docker build -t glimpse .` and
# `docker run --env-file .env --stop-timeout 30 glimpse`. See "Run with Docker" in README.md.

# --- build: install Glimpse and its dependencies into a virtualenv ---
FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore
RUN python -m venv /opt/glimpse
ENV PATH=/opt/glimpse/bin:$PATH
WORKDIR /src
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY adapters ./adapters
# The README's install, without -e: the image keeps no source tree to edit.
RUN pip install .

# --- runtime: the virtualenv only, run by an unprivileged user ---
FROM python:3.11-slim
ENV PATH=/opt/glimpse/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    GLIMPSE_DATA_DIR=/data
RUN useradd --create-home --uid 10001 --user-group glimpse \
    && mkdir /data \
    && chown glimpse:glimpse /data
COPY --from=build /opt/glimpse /opt/glimpse
USER glimpse
WORKDIR /home/glimpse
# Meta's Llama 3 tokenizer ships inside the llama-models wheel
# (site-packages/llama_models/llama3/tokenizer.model): load it now, offline, or fail the build.
RUN python -c "from bot.tokens import TokenCounter; TokenCounter()"
VOLUME ["/data"]
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('GLIMPSE_HEALTH_PORT', '8080') + '/healthz', timeout=4)"]
ENTRYPOINT ["glimpse"]
CMD ["run"]
