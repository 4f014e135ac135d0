# nnsrm: everything runs inside .venv/, created and filled from the requirements files.
#   make demo   set up, then run the whole pipeline on the offline default (digits × conv)
#   make test   set up (with test tools), then run the test suite
PYTHON ?= python3
VENV   ?= .venv
ROOT   ?= results
DATA   ?= digits
MODEL  ?= conv
PY      = $(VENV)/bin/python
# OpenBLAS's SVD is several times slower with two threads on small machines.
export OPENBLAS_NUM_THREADS ?= 1
export TF_CPP_MIN_LOG_LEVEL ?= 2
export MPLBACKEND ?= Agg

.PHONY: setup test-setup demo train activations analyses figures status simulation test test-slow bench clean-venv help

help:
	@echo "make demo        set up and run stages 1-3 and the figures on $(DATA) x $(MODEL) into $(ROOT)/"
	@echo "make test        set up and run the tests (the command CI runs)"
	@echo "make test-slow   also run the slow checks"
	@echo "make figures     the paper's figures (PNG, PDF, GIF) into $(ROOT)/figures/"
	@echo "make status      what is complete / missing / corrupt under $(ROOT)/"
	@echo "make simulation  the XOR simulation (paper Fig. 5-6) into $(ROOT)/simulation/"
	@echo "make bench       benchmarks (see bench/RESULTS.md)"
	@echo "Variables: ROOT=$(ROOT) DATA=$(DATA) MODEL=$(MODEL) PYTHON=$(PYTHON)"

$(VENV)/.runtime-installed: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	touch $@

$(VENV)/.test-installed: $(VENV)/.runtime-installed requirements-test.txt
	$(PY) -m pip install -q -r requirements-test.txt
	touch $@

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

clean-venv:
	rm -rf $(VENV)
