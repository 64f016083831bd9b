# Two commands do everything on a fresh machine: `make demo` and `make test` (which runs `make lint` first).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
export OMP_WAIT_POLICY := PASSIVE

$(BIN)/g2g: pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet 'torch==2.14.1' 'torchvision==0.29.1' || $(BIN)/pip install --quiet torch torchvision
	$(BIN)/pip install --quiet -e '.[test,lint]'
	touch $(BIN)/g2g

venv: $(BIN)/g2g

demo: venv
	$(BIN)/g2g demo --out outputs/demo

lint: venv
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy

# PYTEST_ARGS: e.g. PYTEST_ARGS='-p random_order --random-order-bucket=global --random-order-seed=1'
# one worker process per core (pytest-xdist); every test is hermetic
test: lint
	$(BIN)/python -m pytest -q -n auto $(PYTEST_ARGS)

# the generated documents: robustness checks rerun (about a minute); speed tables from the stored results;
# the app's screenshot (needs chromium); `make models` retrains the bundled models and docs/models.md
docs: venv
	$(BIN)/python benchmarks/robustness.py
	$(BIN)/python benchmarks/bench_step.py --write-docs
	G2G_APP_MODEL=shapes G2G_APP_SCREENSHOT=docs/app.png $(BIN)/python -m pytest -q tests/test_app_browser.py

# the bundled models (src/g2g/models/) and docs/models.md: train each on its built-in data with the
# preset's budget (8.5 minutes each on 2 cores), evaluate it with `g2g eval`, copy model and metrics
models: venv
	$(BIN)/python benchmarks/make_models.py

test-fast: venv
	$(BIN)/python -m pytest -q -m "not slow"

.PHONY: venv demo lint test test-fast docs models
