# Dispatch: `make run` serves, `make test` runs the whole suite. Everything installs from the lock files.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip
PIP_FLAGS := --disable-pip-version-check --quiet

.PHONY: run demo test screenshots bench lint format typecheck check-migrations ci lock clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.runtime: requirements.lock pyproject.toml | $(BIN)/python
	$(PIP) install $(PIP_FLAGS) --require-hashes -r requirements.lock
	$(PIP) install $(PIP_FLAGS) --no-deps --no-build-isolation -e .
	@touch $@

$(VENV)/.dev: requirements-dev.lock pyproject.toml | $(BIN)/python
	$(PIP) install $(PIP_FLAGS) --require-hashes -r requirements-dev.lock
	$(PIP) install $(PIP_FLAGS) --no-deps --no-build-isolation -e .
	@touch $@ $(VENV)/.runtime

## run: install, migrate and serve API + admin UI + background tasks on http://$HOST:$PORT
run: $(VENV)/.runtime
	$(BIN)/dispatch migrate
	$(BIN)/dispatch serve

## demo: the service offline on SQLite, with stand-ins for providers, webhooks, e-mail and rescue nodes
demo: $(VENV)/.runtime
	$(BIN)/dispatch demo $(DEMO_ARGS)

## test: the whole suite (PostgreSQL/Redis tests run when DISPATCH_TEST_DATABASE_URL/_REDIS_URL are set)
test: $(VENV)/.dev
	$(BIN)/python -m pytest $(PYTEST_ARGS)

## screenshots: the browser tests, saving the UI pages they visit as docs/images/*.png
screenshots: $(VENV)/.dev
	DISPATCH_SCREENSHOTS=docs/images DISPATCH_REQUIRE_BROWSER=1 $(BIN)/python -m pytest -m browser tests/web $(PYTEST_ARGS)

## bench: every benchmark under bench/, results in bench/results/ and docs/benchmarks.md
bench: $(VENV)/.dev
	$(BIN)/python bench/run_all.py

lint: $(VENV)/.dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(VENV)/.dev
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

typecheck: $(VENV)/.dev
	$(BIN)/mypy

## check-migrations: the models and the migrations agree (alembic check on a fresh database)
check-migrations: $(VENV)/.dev
	@tmp=$$(mktemp -d); \
	DATABASE_URL=sqlite:///$$tmp/check.db $(BIN)/dispatch migrate --env-file /dev/null >/dev/null && \
	DATABASE_URL=sqlite:///$$tmp/check.db $(BIN)/alembic check; status=$$?; rm -rf $$tmp; exit $$status

ci:
	bash .ci/run

## lock: re-resolve the lock files after changing pyproject.toml (needs uv: pip install uv)
lock:
	uv pip compile pyproject.toml requirements/build.in --python-version 3.11 --generate-hashes -o requirements.lock
	uv pip compile pyproject.toml requirements/build.in --extra dev --python-version 3.11 --generate-hashes -o requirements-dev.lock

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
