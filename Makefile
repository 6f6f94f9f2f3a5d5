# paykit: `make demo` and `make test` set everything up from a fresh clone (only Python 3.11 needed).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# Each target installs only what it needs, once: one stamp per set of extras, each redone when
# the dependencies change. `make demo` needs the core alone (no JupyterLab, no test tools).
CORE    := $(VENV)/.installed-core
LESSONS := $(VENV)/.installed-lessons
TESTING := $(VENV)/.installed-test

.PHONY: setup demo test lint proto lab student up clean

setup: $(TESTING)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(CORE): pyproject.toml setup.py | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(LESSONS): pyproject.toml setup.py | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[lessons]'
	touch $@

# The tests run the lessons (nbval) and their student versions (nbgrader, the course extra).
$(TESTING): pyproject.toml setup.py | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[lessons,course,dev]'
	touch $@

demo: $(CORE)
	$(BIN)/paykit demo

# The tests, then every lesson run top to bottom by nbval (--nbval-lax: the lessons' own asserts decide;
# --nbval-current-env: the kernel is this venv's Python, whatever kernels the machine has).
# Two to four workers (pytest-xdist), a file per worker at a time: most tests wait on servers.
test: $(TESTING)
	$(BIN)/python -m pytest -n auto --maxprocesses 4 --dist loadfile tests lessons --nbval-lax --nbval-current-env

lint: $(TESTING)
	$(BIN)/ruff check paykit tests

# Regenerates the gRPC stubs in paykit/v1 from proto/ (tests/test_proto.py checks they are fresh).
# proto/ is the source: edit there; a wheel carries a copy next to the stubs (setup.py).
proto: $(TESTING)
	$(BIN)/python -m grpc_tools.protoc -Iproto --python_out=. --pyi_out=. --grpc_python_out=. proto/paykit/v1/payment.proto

up: $(CORE)
	$(BIN)/paykit up

# JupyterLab on lessons/; its python3 kernel is this venv's Python (jupyter_client runs "python" as sys.executable).
# JUPYTER_CONFIG_PATH adds jupyter-config/: no news pop-up, nbgrader's panels off (see its README).
# As root (a container), Jupyter wants --allow-root.
lab: $(LESSONS)
	JUPYTER_CONFIG_PATH=$(CURDIR)/jupyter-config $(BIN)/jupyter lab --ServerApp.root_dir=lessons $(if $(filter 0,$(shell id -u)),--allow-root)

# The student versions of the lessons (solutions replaced by a stub, by nbgrader's own preprocessors)
# into student/, which git ignores. `paykit lessons student --check` also runs them.
student: $(TESTING)
	$(BIN)/paykit lessons student --out student

clean:
	rm -rf $(VENV) .paykit student
