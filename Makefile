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

.PHONY: setup run test bench clean-runs airflow-check

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

# Airflow 2.x (TFX 1.21 asks for apache-airflow<3) beside the pinned stack, in its own venv;
# then the generated DAG is imported and its tasks run with `airflow dags test` on a local
# SQLite Airflow. Not part of `make test`. See docs/scale.md (Compile for Airflow).
AIRFLOW_VENV := .venv-airflow
AIRFLOW_VERSION ?= 2.11.2
AIRFLOW_HOME_DIR := $(CURDIR)/runs/airflow-check
# Airflow 2.x's flask-limiter needs rich<14; the stack pins rich 15 (keras accepts any rich).
AIRFLOW_RICH := rich==13.9.4
AF := AIRFLOW_HOME=$(AIRFLOW_HOME_DIR) AIRFLOW__CORE__DAGS_FOLDER=$(AIRFLOW_HOME_DIR)/dags \
	AIRFLOW__CORE__LOAD_EXAMPLES=False AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT=300

airflow-check:
	@test -x $(AIRFLOW_VENV)/bin/python || $(PYTHON) -m venv $(AIRFLOW_VENV)
	$(AIRFLOW_VENV)/bin/python -m pip install --quiet --disable-pip-version-check pip==$(PIP_VERSION)
	mkdir -p $(AIRFLOW_HOME_DIR)/dags
	sed 's/^rich==.*/$(AIRFLOW_RICH)/' requirements.txt > $(AIRFLOW_HOME_DIR)/requirements.txt
	$(AIRFLOW_VENV)/bin/python -m pip install --disable-pip-version-check -r $(AIRFLOW_HOME_DIR)/requirements.txt apache-airflow==$(AIRFLOW_VERSION)
	$(AIRFLOW_VENV)/bin/python -m pip install --quiet --disable-pip-version-check --no-deps -r requirements-nodeps.txt
	$(AF) $(AIRFLOW_VENV)/bin/python -m pipeline compile --config $(CONFIG) --target airflow --output $(AIRFLOW_HOME_DIR)/dags/pipeline_dag.py
	$(AF) $(AIRFLOW_VENV)/bin/airflow db migrate
	$(AF) $(AIRFLOW_VENV)/bin/airflow dags list-import-errors
	$(AF) $(AIRFLOW_VENV)/bin/airflow dags test $$($(AIRFLOW_VENV)/bin/python -c "import yaml; print(yaml.safe_load(open('$(CONFIG)'))['pipeline_name'])")
