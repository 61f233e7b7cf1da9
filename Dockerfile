# Dispatch: API + admin UI. Build: docker build -t dispatch .
# Run (SQLite in the /data volume): docker run -p 8000:8000 -v dispatch-data:/data dispatch

FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/dispatch
ENV PATH=/opt/dispatch/bin:$PATH
WORKDIR /build
# Dependencies first, so this layer is rebuilt only when the lock file changes.
# The lock also pins hatchling, the build backend used with --no-build-isolation below.
COPY requirements.lock ./
RUN pip install --require-hashes -r requirements.lock
# README.md is the package's readme in pyproject.toml; the wheel force-includes
# migrations/ as dispatch/_migrations, so the installed package can migrate by itself.
COPY pyproject.toml README.md ./
COPY src/ src/
COPY migrations/ migrations/
RUN pip install --no-deps --no-build-isolation .

FROM python:3.11-slim
RUN useradd --system --uid 10001 --user-group --home-dir /data --shell /usr/sbin/nologin dispatch \
    && install -d -o dispatch -g dispatch /data
COPY --from=build /opt/dispatch /opt/dispatch
ENV PATH=/opt/dispatch/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOST=0.0.0.0 \
    PORT=8000
# The working directory holds .env (a generated MASTER_KEY) and the default SQLite database.
WORKDIR /data
USER dispatch
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('PORT', '8000'), timeout=4)"]
CMD ["dispatch", "serve"]
