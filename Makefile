# The two commands a newcomer needs: `make demo` and `make test`. Both create .venv first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: test test-cpu test-sim demo clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	touch $@

test: test-cpu test-sim

# The whole suite on the CPU backend (and on a real GPU where there is one), PTX checks included.
test-cpu: $(VENV)/.installed
	$(PY) -m pytest -q tests

# The CUDA backend's kernels under the Numba CUDA simulator, in a process of its own
# (NUMBA_ENABLE_CUDASIM must be set before Numba is imported).
test-sim: $(VENV)/.installed
	NUMBA_ENABLE_CUDASIM=1 $(PY) -m pytest -q tests

demo: $(VENV)/.installed
	$(PY) -m gpurnn.demo

clean:
	rm -rf $(VENV) runs build *.egg-info
