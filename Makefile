# Two commands: `make run` (the whole product, embedded, with demo data) and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
MANAGE := $(BIN)/python manage.py
PORT ?= 8000

.PHONY: run dev-env server-env test lint format messages bench-ingest bench-pages clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed-run: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@ $(VENV)/.installed-run

# Development settings for this checkout: DEBUG on and random secrets, made once and kept
# (sessions and stored provider credentials survive restarts). The settings read the file,
# so manage.py, the web server, the worker and the scheduler all use it; the environment wins.
VAR_DIR := $(or $(TOKI_VAR_DIR),var)
DEV_ENV := $(VAR_DIR)/development.env
SERVER_ENV := $(VAR_DIR)/server.env

$(DEV_ENV):
	@mkdir -p $(@D)
	@umask 077 && $(PYTHON) -c 'import secrets; print("\n".join([ \
		"# Written once by make run for local development; delete it to get new secrets", \
		"# (logged-in sessions end; provider credentials saved with the old key become unreadable).", \
		"# Read by every process started from this checkout, for variables the environment does not set.", \
		"DEBUG=true", \
		"SECRET_KEY=" + secrets.token_urlsafe(50), \
		"FIELD_ENCRYPTION_KEY=" + secrets.token_urlsafe(32)]))' > $@.tmp && mv $@.tmp $@
	@echo "Wrote development secrets to $@"

dev-env: $(DEV_ENV)

# The port this run serves, for links in alert emails (DASHBOARD_URL's default) from every
# process of the checkout, manage.py in a second terminal too. Rewritten at each `make run`.
server-env:
	@mkdir -p $(VAR_DIR)
	@printf '# Written by make run at each start: the port its web server serves.\nTOKI_PORT=%s\n' "$(PORT)" > $(SERVER_ENV)

# Local, embedded mode unless DATABASE_URL/REDIS_URL say otherwise.
run: $(VENV)/.installed-run $(DEV_ENV) server-env
	$(MANAGE) migrate --noinput
	$(MANAGE) collectstatic --noinput -v0
	$(MANAGE) seed_demo
	@printf '\n  TOKI Dashboard → http://127.0.0.1:%s/\n  Log in as admin, finance or engineer; password: toki-demo\n  Ctrl-C stops the web server, the worker and the scheduler.\n\n' "$(PORT)"
	rm -rf $(VAR_DIR)/metrics  # Prometheus counters of the processes that ran before
	TOKI_PORT=$(PORT) exec $(BIN)/honcho -f Procfile start

test: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/pytest

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(VENV)/.installed-dev
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# The Simplified Chinese catalogue (README, Languages): collect the marked labels into the .po
# (makemessages needs GNU gettext), then compile the .mo that is committed beside it (babel's
# compiler, so nothing else needs gettext).
messages: $(VENV)/.installed-dev
	DEBUG=true $(MANAGE) makemessages -l zh_Hans --ignore=.venv --ignore=tests --ignore=bench --ignore=deploy --ignore=var --no-obsolete
	$(BIN)/pybabel compile -d locale -D django -l zh_Hans

# Benchmarks (bench/README.md) against PostgreSQL: BENCH_DATABASE_URL names a disposable database.
BENCH_DATABASE_URL ?= postgres://toki:toki@127.0.0.1:5432/toki_bench

bench-ingest: $(VENV)/.installed-dev
	$(BIN)/python bench/ingest.py --database-url $(BENCH_DATABASE_URL)

bench-pages: $(VENV)/.installed-dev
	$(BIN)/python bench/generate.py --database-url $(BENCH_DATABASE_URL)
	$(BIN)/python bench/pages.py --database-url $(BENCH_DATABASE_URL)

clean:
	rm -rf var staticfiles .pytest_cache
