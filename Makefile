# Two commands on a fresh machine with Python 3.10+:
#   make demo   - compares 8 regularizers on scikit-learn's digits (table + compare_regularizers.png)
#   make test   - runs the whole test suite once per Keras backend (TensorFlow, JAX, PyTorch)
# Each creates .venv and installs what it needs on first use.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
BACKENDS ?= tensorflow jax torch
# torch==2.13.0 is a CPU build; an unpinned torch pulls a multi-GB CUDA build.
TORCH ?= torch==2.13.0

.PHONY: demo test install clean

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[tensorflow-cpu,jax,torch,test,examples]"
	touch $@

install: $(VENV)/.installed

demo: $(VENV)/.installed
	KERAS_BACKEND=$${KERAS_BACKEND:-jax} $(PY) examples/compare_regularizers.py

test: $(VENV)/.installed
	@status=0; for backend in $(BACKENDS); do \
		echo "=== KERAS_BACKEND=$$backend ==="; \
		KERAS_BACKEND=$$backend $(PY) -m pytest -q $(PYTEST_ARGS) || status=1; \
	done; \
	if [ $$status -ne 0 ]; then echo "FAILED on at least one backend"; fi; \
	exit $$status

clean:
	rm -rf $(VENV) build *.egg-info
