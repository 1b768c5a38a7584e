# The two commands a newcomer needs: `make demo` and `make test`. Both create .venv first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SHELL := bash
.SHELLFLAGS := -o pipefail -c

.PHONY: test test-cpu test-sim demo clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	touch $@

# Both suites run whatever the first gives, each in a process of its own; the end lists the
# failures of both (each suite's "short test summary info" lines, kept in .test-logs/), and the
# exit status is non-zero if either failed.
test: $(VENV)/.installed
	@mkdir -p .test-logs; cpu=0; sim=0; \
	$(MAKE) --no-print-directory test-cpu 2>&1 | tee .test-logs/cpu.log || cpu=1; \
	$(MAKE) --no-print-directory test-sim 2>&1 | tee .test-logs/sim.log || sim=1; \
	echo; for suite in cpu sim; do \
	  echo "== test-$$suite: $$(grep -E "[0-9]+ (passed|failed|errors?)( |,|$$)" .test-logs/$$suite.log | tail -n 1)"; \
	  grep -E '^(FAILED|ERROR) ' .test-logs/$$suite.log || true; \
	done; \
	[ $$cpu = 0 ] && [ $$sim = 0 ]

# The whole suite on the CPU backend (and on a real GPU where there is one), PTX checks included.
test-cpu: $(VENV)/.installed
	$(PY) -m pytest -q -rfE tests

# The CUDA backend's kernels under the Numba CUDA simulator, in a process of its own
# (NUMBA_ENABLE_CUDASIM must be set before Numba is imported).
test-sim: $(VENV)/.installed
	NUMBA_ENABLE_CUDASIM=1 $(PY) -m pytest -q -rfE tests

demo: $(VENV)/.installed
	$(PY) -m gpurnn.demo

clean:
	rm -rf $(VENV) runs build *.egg-info .test-logs
