# Two commands do everything on a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
export OMP_WAIT_POLICY := PASSIVE

$(BIN)/g2g: pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet 'torch==2.14.1' 'torchvision==0.29.1' || $(BIN)/pip install --quiet torch torchvision
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(BIN)/g2g

venv: $(BIN)/g2g

demo: venv
	$(BIN)/g2g demo --out outputs/demo

test: venv
	$(BIN)/python -m pytest -q

test-fast: venv
	$(BIN)/python -m pytest -q -m "not slow"

.PHONY: venv demo test test-fast
