# diemcau: FastAPI coordinator for hybrid dialogue conferences.
#
# Build:  docker build -t diemcau .
# Run:    see docker-compose.yml (PostgreSQL + app). On start the container runs
#         `diemcau init` (migrates the database; creates the first admin account if there is
#         none and prints its credentials once, so read the first log) and then `diemcau serve`.
#
# No secret is baked into the image. Give DIEMCAU_SECRET_KEY at run time, or let the app generate
# one under DIEMCAU_VAR_DIR (/srv/diemcau/var; mount a volume there so it survives restarts).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

# Unprivileged account with a fixed numeric id (works with runAsNonRoot-style policies).
RUN groupadd --system --gid 10001 diemcau \
    && useradd --system --uid 10001 --gid diemcau --home-dir /srv/diemcau \
        --no-create-home --shell /usr/sbin/nologin diemcau

# Install the project from the copied source, then drop the source: the image runs the
# installed package and the `diemcau` console script.
WORKDIR /tmp/diemcau-src
COPY . .
RUN pip install --no-cache-dir . \
    && cd / \
    && rm -rf /tmp/diemcau-src

WORKDIR /srv/diemcau
# The state directory belongs to the app user; a fresh named volume mounted here copies this
# ownership, so the app can write its SQLite file / generated secret there.
RUN mkdir -p /srv/diemcau/var \
    && chown diemcau:diemcau /srv/diemcau/var \
    && chmod 0700 /srv/diemcau/var

ENV DIEMCAU_HOST=0.0.0.0 \
    DIEMCAU_PORT=8000 \
    DIEMCAU_VAR_DIR=/srv/diemcau/var

USER 10001:10001

EXPOSE 8000
VOLUME ["/srv/diemcau/var"]

HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request; port = os.environ.get('DIEMCAU_PORT', '8000'); sys.exit(0 if urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=4).status == 200 else 1)"]

CMD ["sh", "-c", "diemcau init && exec diemcau serve"]
