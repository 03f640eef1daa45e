# holmes: two commands for a newcomer (`make run`, `make test`); `make help` lists the rest.
VENV ?= .venv
PY := $(VENV)/bin/python
HOLMES := $(VENV)/bin/holmes
PYTEST_ARGS ?=

.PHONY: help install run test lint bench train clean

help:  ## this list
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# The CPU build of torch 2.13.0 is on disk on this kind of machine; any other spec pulls GBs of CUDA.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

install: $(VENV)/.installed  ## create .venv and install holmes with its dev tools

run: install  ## start broker, worker, API and 8 simulated beds; prints the dashboard URL
	$(HOLMES) up

# The dashboard's browser test drives Debian's Chromium (never a browser downloaded by playwright).
CHROMIUM := /usr/bin/chromium
$(CHROMIUM):
	if [ "$$(id -u)" = 0 ]; then apt-get update -q && apt-get install -y -q chromium; \
	else sudo apt-get update -q && sudo apt-get install -y -q chromium; fi

# tests/integration/test_compose.py validates docker-compose.yml with Debian's docker-compose 1.29; no engine is
# needed or installed (docker.io is only a recommendation).
DOCKER_COMPOSE := /usr/bin/docker-compose
$(DOCKER_COMPOSE):
	if [ "$$(id -u)" = 0 ]; then apt-get update -q && apt-get install -y -q --no-install-recommends docker-compose; \
	else sudo apt-get update -q && sudo apt-get install -y -q --no-install-recommends docker-compose; fi

test: install $(CHROMIUM) $(DOCKER_COMPOSE)  ## the whole test suite (unit + integration against the embedded broker and real databases)
	$(PY) -m pytest $(PYTEST_ARGS)

lint: install  ## ruff
	$(VENV)/bin/ruff check .

bench: install  ## end-to-end sweep (16..1000 beds) and the mode comparison, JSON under bench/, plot in docs/
	$(HOLMES) bench --beds 16,64,256,1000 --duration 60 --json bench/sweep.json --png docs/latency-vs-beds.png
	$(HOLMES) bench --beds 256 --duration 40 --aligned --compare --json bench/compare-256-aligned.json

train: install  ## retrain the served model from ../shared/data (HOLMES_DATA_DIR)
	$(HOLMES) train

clean:  ## remove the virtualenv and local state
	rm -rf $(VENV) .holmes
