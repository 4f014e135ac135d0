# nnsrm: everything runs inside .venv/, created from the lock file (uv.lock) with uv.
#   make demo   set up, then run the whole pipeline on the offline default (digits × conv)
#   make test   set up (with the test tools), then run the test suite
VENV   ?= .venv
ROOT   ?= results
DATA   ?= digits
MODEL  ?= conv
PY      = $(VENV)/bin/python
UV_VERSION = 0.13.9
UV      = $(VENV)/.uv/bin/uv
SUPPORTED_PYTHONS = 3.11 3.12 3.13 3.14

# The interpreter: PYTHON=... if given, else the first supported one on the PATH.
PYTHON ?= $(firstword $(foreach c,python3 $(addprefix python,$(SUPPORTED_PYTHONS)),$(if $(filter $(SUPPORTED_PYTHONS),$(shell $(c) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)),$(c))) python3)
# What the interpreter says of itself, asked both ways (a wrapper may answer only one).
python_versions = $(sort $(shell $(PYTHON) --version 2>&1 | sed -n 's/^Python \([0-9][0-9]*\.[0-9][0-9]*\).*/\1/p') \
                    $(shell $(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null))
check_python = $(if $(python_versions),,$(error cannot run $(PYTHON) (PYTHON=$(PYTHON)); install Python $(subst $() $(),$(comma) ,$(SUPPORTED_PYTHONS)) (e.g. uv python install 3.12) and run make PYTHON=python3.12 $(MAKECMDGOALS)))$(if $(filter-out $(SUPPORTED_PYTHONS),$(python_versions)),$(error $(PYTHON) is Python $(python_versions), which nnsrm does not support: it needs Python $(subst $() $(),$(comma) ,$(SUPPORTED_PYTHONS)); install one (e.g. uv python install 3.12) and run make PYTHON=python3.12 $(MAKECMDGOALS)))
comma := ,

# OpenBLAS's SVD is several times slower with two threads on small machines.
export OPENBLAS_NUM_THREADS ?= 1
export TF_CPP_MIN_LOG_LEVEL ?= 2
export MPLBACKEND ?= Agg
# uv installs into $(VENV) from uv.lock, with the interpreter chosen above, and never downloads Python,
export UV_PROJECT_ENVIRONMENT = $(abspath $(VENV))
export UV_PYTHON_DOWNLOADS = never
# ... and compiles the packages' bytecode once: where PYTHONDONTWRITEBYTECODE is set, every process would
# otherwise compile keras, jax and scipy from source (a stage script's start-up: ~21 s of CPU, not ~8).
export UV_COMPILE_BYTECODE = 1

.PHONY: check-python setup test-setup demo train activations analyses figures status simulation test test-slow bench lock check-wheels clean-venv help

help:
	@echo "make demo          set up and run stages 1-3 and the figures on $(DATA) x $(MODEL) into $(ROOT)/"
	@echo "make test          set up and run the tests (the command CI runs)"
	@echo "make test-slow     also run the slow checks"
	@echo "make figures       the paper's figures (PNG, PDF, GIF) into $(ROOT)/figures/"
	@echo "make status        what is complete / missing / stale / corrupt under $(ROOT)/"
	@echo "make simulation    the XOR simulation (paper Fig. 5-6) into $(ROOT)/simulation/"
	@echo "make bench         benchmarks (see bench/RESULTS.md)"
	@echo "make lock          re-resolve uv.lock after editing pyproject.toml (needs the package index)"
	@echo "make check-wheels  which supported Python has a binary wheel of every locked package"
	@echo "Variables: ROOT=$(ROOT) DATA=$(DATA) MODEL=$(MODEL) PYTHON=$(PYTHON) (Python $(SUPPORTED_PYTHONS))"

# The interpreter is checked before anything is created: always when PYTHON is given, else when there is no venv yet.
check-python:
	$(if $(or $(filter command line environment,$(origin PYTHON)),$(if $(wildcard $(PY)),,no-venv)),$(check_python))@:

$(UV): | check-python
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m venv $(VENV)/.uv
	$(VENV)/.uv/bin/python -m pip install -q --disable-pip-version-check uv==$(UV_VERSION)

$(VENV)/.runtime-installed: uv.lock pyproject.toml | check-python $(UV)
	$(UV) sync -q --frozen --compile-bytecode --python $(PY)
	rm -f $(VENV)/.test-installed
	touch $@

$(VENV)/.test-installed: uv.lock pyproject.toml | check-python $(UV)
	$(UV) sync -q --frozen --compile-bytecode --python $(PY) --extra test
	rm -f $(VENV)/.runtime-installed
	touch $@ $(VENV)/.runtime-installed

setup: $(VENV)/.runtime-installed

test-setup: $(VENV)/.test-installed

train: setup
	$(PY) train_cifar.py --data $(DATA) --model $(MODEL) --root $(ROOT)

activations: train
	$(PY) save_acts_cifar.py --data $(DATA) --model $(MODEL) --root $(ROOT)

analyses: activations
	$(PY) run_analyses.py --data $(DATA) --model $(MODEL) --root $(ROOT)

figures: analyses
	$(PY) make_figures.py --data $(DATA) --model $(MODEL) --root $(ROOT)

demo: figures

status: setup
	$(PY) status.py --root $(ROOT)

simulation: setup
	$(PY) simulation/run_sim.py --noise-sweep --k-sweep --figures --out $(ROOT)/simulation

test: test-setup
	$(PY) -m pytest -q

test-slow: test-setup
	$(PY) -m pytest -q -m "slow or not slow"

bench: setup
	$(PY) bench/bench_srm.py --scale small

lock: | $(UV)
	$(UV) lock

check-wheels: | $(UV)
	PATH="$(abspath $(VENV))/.uv/bin:$$PATH" $(PY) tools/check_wheels.py

clean-venv:
	rm -rf $(VENV)
