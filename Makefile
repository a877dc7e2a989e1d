# edgekit - the two commands of the README's quick start, each installing what it needs:
#   make demo   export the bundled example model for the emulated Cortex-M4, build it, run it in
#               QEMU and compare every output with TFLite's reference interpreter
#   make test   the whole test suite
# Both are idempotent: the system packages and the virtualenv are installed once.
# For developers:
#   make test-fast  the fast tier (pytest -m "not slow", tests/conftest.py): planner, weight
#                   formats, integer reference, every kernel through its host build; no QEMU,
#                   no ../shared, no TensorFlow once its small test models are cached
#   make test-data  Debian's dataset-fashion-mnist, for the tests on the whole Fashion-MNIST
#                   test set (they skip without it; CI installs it and makes them mandatory)

PYTHON      ?= python3.11
VENV        := .venv
PY          := $(VENV)/bin/python
APT_PKGS    := gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm make gcc
DATA_PKGS   := dataset-fashion-mnist
FASHION     := /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz
OBJ_CACHE   ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/edgekit/objs
SUDO        := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
PYTEST_ARGS ?=

.PHONY: demo test test-fast test-data setup system-deps python-deps clean

demo: setup
	$(PY) examples/demo.py

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

# The inner loop keeps compiled kernel objects between runs (edgekit/build/objcache.py: keyed by the
# sources, every header, compiler and flags); make test gives each session a fresh cache.
test-fast: python-deps
	EDGEKIT_OBJ_CACHE="$${EDGEKIT_OBJ_CACHE:-$(OBJ_CACHE)}" $(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

test-data:
	@if ! [ -f $(FASHION) ]; then \
	    echo "installing $(DATA_PKGS)"; \
	    $(SUDO) apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $(DATA_PKGS); \
	fi

setup: system-deps python-deps

# apt is asked only when a tool is missing.
system-deps:
	@if ! command -v arm-none-eabi-gcc >/dev/null || ! command -v qemu-system-arm >/dev/null \
	    || ! [ -f /usr/lib/arm-none-eabi/newlib/libc.a ] || ! command -v gcc >/dev/null; then \
	    echo "installing $(APT_PKGS)"; \
	    $(SUDO) apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $(APT_PKGS); \
	fi

python-deps: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "edgekit needs $(PYTHON) (Python 3.11)"; exit 1; }
	[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

clean:
	rm -rf build .pytest_cache
