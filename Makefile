# Two commands on a fresh machine with Python 3.10+:
#   make demo   - compares 9 ways to regularize on scikit-learn's digits with noise inputs (table + figure)
#   make test   - runs the whole test suite once per Keras backend (TensorFlow, JAX, PyTorch)
# Each creates .venv and installs the pinned versions of constraints.txt on first use.
#   make test-latest - the same suite in .venv-latest with the newest releases the
#                      registry serves (no pins), to see drift before it breaks `make test`

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
BACKENDS ?= tensorflow jax torch
CONSTRAINTS ?= constraints.txt
EXTRAS := tensorflow-cpu,jax,torch,test,examples
# torch==2.13.0 is a CPU build; an unpinned torch pulls a multi-GB CUDA build.
TORCH ?= torch==2.13.0
LATEST_VENV := .venv-latest

# Runs the suite with $(1)/bin/python once per backend, then builds the sdist
# and wheel and checks them as a package index would (twine check); fails if
# any of these fails.
define run_tests
	@status=0; for backend in $(BACKENDS); do \
		echo "=== KERAS_BACKEND=$$backend ==="; \
		KERAS_BACKEND=$$backend $(1)/bin/python -m pytest -q $(PYTEST_ARGS) || status=1; \
	done; \
	echo "=== sdist and wheel ==="; rm -rf $(1)/dist; \
	{ $(1)/bin/python -m build --outdir $(1)/dist . > $(1)/build.log 2>&1 \
	  || { tail -20 $(1)/build.log; false; }; } \
	&& $(1)/bin/python -m twine check --strict $(1)/dist/* || status=1; \
	if [ $$status -ne 0 ]; then echo "FAILED on at least one backend or the package check"; fi; \
	exit $$status
endef

.PHONY: demo test test-latest install clean

$(VENV)/.installed: setup.cfg pyproject.toml $(CONSTRAINTS)
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c $(CONSTRAINTS) "$(TORCH)"
	$(PY) -m pip install -q -c $(CONSTRAINTS) -e ".[$(EXTRAS)]"
	touch $@

install: $(VENV)/.installed

demo: $(VENV)/.installed
	KERAS_BACKEND=$${KERAS_BACKEND:-jax} $(PY) examples/compare_regularizers.py

test: $(VENV)/.installed
	$(call run_tests,$(VENV))

# A new venv each time, so it always gets the newest releases.
test-latest:
	rm -rf $(LATEST_VENV)
	$(PYTHON) -m venv $(LATEST_VENV)
	$(LATEST_VENV)/bin/python -m pip install -q --upgrade pip
	$(LATEST_VENV)/bin/python -m pip install -q "$(TORCH)"
	$(LATEST_VENV)/bin/python -m pip install -q --upgrade -e ".[$(EXTRAS)]"
	$(LATEST_VENV)/bin/python -m pip freeze --exclude-editable > $(LATEST_VENV)/versions.txt
	@echo "Versions that differ from $(CONSTRAINTS) (< pinned, > newest):"
	@grep -v '^#' $(CONSTRAINTS) | sort -f > $(LATEST_VENV)/pinned.txt
	@sed 's/+[A-Za-z0-9.]*$$//' $(LATEST_VENV)/versions.txt | sort -f | diff $(LATEST_VENV)/pinned.txt - || true
	$(call run_tests,$(LATEST_VENV))

clean:
	rm -rf $(VENV) $(LATEST_VENV) build *.egg-info
