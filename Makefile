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

test: install $(CHROMIUM)  ## the whole test suite (unit + integration against the embedded broker and real databases)
	$(PY) -m pytest $(PYTEST_ARGS)

lint: install  ## ruff
	$(VENV)/bin/ruff check .

bench: install  ## end-to-end benchmark at 16, 64 and 256 beds, JSON under bench/
	for n in 16 64 256; do $(HOLMES) bench --beds $$n --duration 120 --json bench/bench-$$n.json; done

train: install  ## retrain the served model from ../shared/data (HOLMES_DATA_DIR)
	$(HOLMES) train

clean:  ## remove the virtualenv and local state
	rm -rf $(VENV) .holmes
