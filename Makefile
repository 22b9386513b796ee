# Two commands: `make run` (the whole product, embedded, with demo data) and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
MANAGE := $(BIN)/python manage.py
PORT ?= 8000

.PHONY: run test lint format bench-ingest bench-pages clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed-run: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@ $(VENV)/.installed-run

# Local, embedded mode unless DATABASE_URL/REDIS_URL say otherwise. DEBUG is on so
# that no secret has to be invented for a demo; production sets SECRET_KEY instead.
run: export DEBUG ?= true
run: $(VENV)/.installed-run
	@mkdir -p var
	$(MANAGE) migrate --noinput
	$(MANAGE) collectstatic --noinput -v0
	$(MANAGE) seed_demo
	@printf '\n  TOKI Dashboard → http://127.0.0.1:%s/\n  Log in as admin, finance or engineer; password: toki-demo\n  Ctrl-C stops the web server, the worker and the scheduler.\n\n' "$(PORT)"
	TOKI_PORT=$(PORT) exec $(BIN)/honcho -f Procfile start

test: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/pytest

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(VENV)/.installed-dev
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Benchmarks (DESIGN.md §8) against PostgreSQL: BENCH_DATABASE_URL names a disposable database.
BENCH_DATABASE_URL ?= postgres://toki:toki@127.0.0.1:5432/toki_bench

bench-ingest: $(VENV)/.installed-dev
	$(BIN)/python bench/ingest.py --database-url $(BENCH_DATABASE_URL)

bench-pages: $(VENV)/.installed-dev
	$(BIN)/python bench/generate.py --database-url $(BENCH_DATABASE_URL)
	$(BIN)/python bench/pages.py --database-url $(BENCH_DATABASE_URL)

clean:
	rm -rf var staticfiles .pytest_cache
