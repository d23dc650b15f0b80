# Two entry points: `make run` (serve with embedded defaults) and `make test` (the whole suite, real Redis).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: install run test lint settings-doc bench-latency bench-accuracy clean

$(STAMP): pyproject.toml clients/python/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	$(BIN)/python -m pip install --quiet -e clients/python
	touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/fewshot serve

# regenerate the settings table in docs/configuration.md from app/config.py (tests/test_config_doc.py checks it)
settings-doc: install
	$(BIN)/python -m app.config_doc

lint: install
	$(BIN)/ruff check app tests bench training harness clients
	$(BIN)/ruff format --check app tests bench training harness clients

# Uses REDIS_URL when reachable, otherwise starts a throwaway redis-server (tests/redis_server.py, harness/redis_proc.py).
# Two to four workers (pytest-xdist): much of the suite waits on processes, sockets and Redis.
test: install lint
	$(BIN)/python -m pytest -q -n auto --maxprocesses=4

bench-latency: install
	$(BIN)/python -m bench.latency

bench-accuracy: install
	$(BIN)/python -m bench.accuracy_http --shots 5 --seeds 0 1 2

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
