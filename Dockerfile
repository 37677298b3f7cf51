# syntax=docker/dockerfile:1
# Nexus Wiki container: wheels are built in one stage and installed into a slim runtime image
# that runs as a non-root user. Data (SQLite database, secret key, search index) lives in /data.

# ---- build: compile every dependency into a wheel ---------------------------------------------
FROM python:3.11-slim AS builder
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /build
COPY requirements.txt .
RUN pip wheel --wheel-dir /wheels -r requirements.txt

# ---- runtime: only the wheels and the application files ---------------------------------------
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    ENV=production \
    FLASK_APP=wsgi.py \
    INSTANCE_PATH=/data \
    HOST=0.0.0.0 \
    PORT=8000

RUN groupadd --system --gid 10001 wiki \
    && useradd --system --uid 10001 --gid wiki --home-dir /app --shell /usr/sbin/nologin wiki

COPY --from=builder /wheels /wheels
COPY requirements.txt /tmp/requirements.txt
RUN pip install --no-index --find-links=/wheels -r /tmp/requirements.txt \
    && rm -rf /wheels /tmp/requirements.txt

WORKDIR /app
COPY --chown=root:root wsgi.py config.py gunicorn.conf.py ./
COPY --chown=root:root wiki/ wiki/
COPY --chown=root:root migrations/ migrations/
COPY --chown=root:root templates/ templates/
COPY --chown=root:root static/ static/
COPY --chown=root:root content/ content/
COPY --chown=root:root --chmod=0755 deploy/entrypoint.sh /usr/local/bin/wiki-entrypoint

# The application code stays root-owned (read-only for the app); only /data is writable.
RUN mkdir -p /data/index && chown -R wiki:wiki /data
VOLUME ["/data"]
USER wiki
EXPOSE 8000

HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '8000'), timeout=4)"]

ENTRYPOINT ["wiki-entrypoint"]
CMD ["serve"]
