# Both targets set up .venv themselves, so a fresh Debian machine with Python 3.11 only needs make.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean venv sysdeps

$(STAMP): pyproject.toml
	@$(PYTHON) -m venv $(VENV) 2>/dev/null || { \
	  echo "python3-venv missing; installing it"; \
	  apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null && $(PYTHON) -m venv $(VENV); }
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[all,test]'
	@touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m example_apps.demo

# The tests talk to a real redis-server and PostgreSQL (they start their own), and Chromium.
sysdeps:
	@command -v redis-server >/dev/null 2>&1 || { \
	  echo "redis-server missing; installing it"; \
	  apt-get update -qq && apt-get install -y -qq redis-server >/dev/null; }
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 || { \
	  echo "postgresql missing; installing it (the records tests run on a real PostgreSQL)"; \
	  apt-get update -qq && apt-get install -y -qq postgresql >/dev/null; }
	@test -x /usr/bin/chromium || { \
	  echo "chromium missing; installing it (headless browser tests)"; \
	  apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }

test: $(STAMP) sysdeps
	$(BIN)/python -m pytest -x -q

lint: $(STAMP)
	$(BIN)/mypy aauth_server adapters
	$(BIN)/ruff check aauth_server adapters example_apps tests bench
	$(BIN)/ruff format --check aauth_server adapters example_apps tests bench

bench: $(STAMP)
	$(BIN)/python bench/verify.py

clean:
	rm -rf $(VENV)
