# dspyq worker / Flower image: `docker compose` runs `dspyq worker --pool <name>` or Flower in it.
# No secret is baked in: API keys, database and broker URLs come from the environment at run time.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
# Metadata first, then the code: the wheel build needs both, and .dockerignore keeps out
# everything else (tests, local databases, .env files).
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install . && rm -rf /src

# Workers never run as root (Celery warns about it, and a task has no business owning the box).
RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin dspyq
USER dspyq
WORKDIR /home/dspyq

CMD ["dspyq", "--help"]
