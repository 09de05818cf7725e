# The README's two commands: `make demo` (main job) and `make test` (test suite).
# Each creates .venv on first use and installs what it needs into it.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python

.PHONY: demo test lint clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(VENV)/.stamp-demo: pyproject.toml | $(PY)
	$(PY) -m pip install -q -e ".[webrtc]"
	touch $@

$(VENV)/.stamp-test: pyproject.toml | $(PY)
	$(PY) -m pip install -q -e ".[dev,eval,webrtc]"
	touch $@

demo: $(VENV)/.stamp-demo
	$(PY) -m streamcodec demo

test: $(VENV)/.stamp-test
	$(PY) -m pytest -q

lint: $(VENV)/.stamp-test
	$(PY) -m ruff check streamcodec kernels tests benchmarks demos

clean:
	rm -rf $(VENV) demo_out .pytest_cache
