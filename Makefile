# paykit: `make demo` and `make test` set everything up from a fresh clone (only Python 3.11 needed).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: setup demo test lint proto lab student up clean

setup: $(STAMP)

# Re-install when the dependencies change; the stamp records a finished install.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[lessons,course,dev]'
	touch $(STAMP)

demo: setup
	$(BIN)/paykit demo

# The tests, then every lesson run top to bottom by nbval (--nbval-lax: the lessons' own asserts decide;
# --nbval-current-env: the kernel is this venv's Python, whatever kernels the machine has).
# Two to four workers (pytest-xdist), a file per worker at a time: most tests wait on servers.
test: setup
	$(BIN)/python -m pytest -n auto --maxprocesses 4 --dist loadfile tests lessons --nbval-lax --nbval-current-env

lint: setup
	$(BIN)/ruff check paykit tests

# Regenerates the gRPC stubs in paykit/v1 from proto/ (tests/test_proto.py checks they are fresh).
proto: setup
	$(BIN)/python -m grpc_tools.protoc -Iproto --python_out=. --pyi_out=. --grpc_python_out=. proto/paykit/v1/payment.proto

up: setup
	$(BIN)/paykit up

# JupyterLab on lessons/; its python3 kernel is this venv's Python (jupyter_client runs "python" as sys.executable).
# JUPYTER_CONFIG_PATH adds jupyter-config/: no news pop-up, nbgrader's panels off (see its README).
# As root (a container), Jupyter wants --allow-root.
lab: setup
	JUPYTER_CONFIG_PATH=$(CURDIR)/jupyter-config $(BIN)/jupyter lab --ServerApp.root_dir=lessons $(if $(filter 0,$(shell id -u)),--allow-root)

# The student versions of the lessons (solutions replaced by a stub, by nbgrader's own preprocessors)
# into student/, which git ignores. `paykit lessons student --check` also runs them.
student: setup
	$(BIN)/paykit lessons student --out student

clean:
	rm -rf $(VENV) .paykit student
