# README's two commands: `make run` and `make test`. Both create or update .venv first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP_VERSION := 24.3.1
# The stamp holds a hash of the requirement files: a second `make setup` installs nothing.
REQ_HASH := $(shell cat requirements.txt requirements-nodeps.txt requirements-dev.txt 2>/dev/null | sha256sum | cut -c1-16)
STAMP := $(VENV)/.installed-$(REQ_HASH)
CONFIG ?= configs/digits_cnn.yaml
PYTEST_ARGS ?=

.PHONY: setup run test bench clean-runs

setup: $(STAMP)

$(STAMP): requirements.txt requirements-nodeps.txt requirements-dev.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "[setup] installing pinned dependencies into $(VENV) (stage 1: resolver)"
	$(PY) -m pip install --quiet --disable-pip-version-check pip==$(PIP_VERSION)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt -r requirements-dev.txt
	@echo "[setup] stage 2: tfx + MLMD/TFDV with --no-deps (see requirements-nodeps.txt)"
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -r requirements-nodeps.txt
	$(PY) -c "import components.tfx_compat as c; c.check_stack()"
	@rm -f $(VENV)/.installed-*
	@touch $@

run: setup
	$(PY) -m pipeline run --config $(CONFIG) --summary-json runs/last_summary.json

test: setup
	$(PY) -m pytest tests $(PYTEST_ARGS)

bench: setup
	$(PY) bench/train_throughput.py
	$(PY) bench/serving_bench.py
	$(PY) bench/tensorrt_bench.py

clean-runs:
	rm -rf runs/
