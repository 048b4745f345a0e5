# `make train` and `make test` set everything up on a fresh machine, then run.
ENV_DIR := $(if $(VIRTUAL_ENV),$(VIRTUAL_ENV),.venv)
PY := $(ENV_DIR)/bin/python
STAMP := $(ENV_DIR)/.ebrl-setup-stamp

.PHONY: setup train test test-slow test-long lint bench bench-sac bench-softq bench-gpu docs

$(STAMP): pyproject.toml scripts/setup.sh
	bash scripts/setup.sh
	touch $@

setup: $(STAMP)

train: $(STAMP)
	$(PY) -m ebrl train $(ARGS)

test: $(STAMP)
	$(PY) -m pytest -q $(ARGS)

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow $(ARGS)

# the Hypothesis properties with 500 fresh (random) examples each
test-long: $(STAMP)
	HYPOTHESIS_PROFILE=long $(PY) -m pytest -q tests/test_properties.py $(ARGS)

lint: $(STAMP)
	$(PY) -m ruff check ebrl tests scripts experiments
	$(PY) -m ruff format --check ebrl tests scripts experiments

bench: $(STAMP)
	$(PY) scripts/bench_samplers.py $(ARGS)

# needs the bench extra (stable-baselines3): pip install -e ".[bench]"
bench-sac: $(STAMP)
	$(PY) scripts/bench_sac.py $(ARGS)

bench-softq: $(STAMP)
	$(PY) scripts/bench_softq.py $(ARGS)

# on a machine with a CUDA build of torch: the CUDA tests, then the same tables on the GPU
bench-gpu: $(STAMP)
	scripts/bench_gpu.sh $(PY)

# the HTML API reference from the docstrings into docs/api/ (needs: pip install -e ".[docs]")
docs: $(STAMP)
	$(PY) scripts/build_docs.py $(ARGS)
