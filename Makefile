# dpnb — the two commands: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
DEMO   ?= data/demo
JOBS   ?=
export MPLBACKEND := agg

.PHONY: demo test lab bench data clean-demo help

help:
	@echo "make demo   - set up .venv, simulate the demo data, run the demo bucket, print reports/index.html"
	@echo "make test   - set up .venv with test extras and run the whole test suite"
	@echo "make lab    - start JupyterLab on notebooks/"
	@echo "make bench  - run the benchmarks (figures as ratios against baselines of the same run)"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml $(BIN)/python
	$(BIN)/python -m pip install -q -e ".[test,bench]"
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $@

$(DEMO)/truth.json: $(VENV)/.installed
	$(BIN)/dpnb simulate --scale demo --out $(DEMO)

data: $(DEMO)/truth.json

demo: $(VENV)/.installed $(DEMO)/truth.json
	$(BIN)/dpnb run parameters/buckets/demo.yaml $(if $(JOBS),--jobs $(JOBS),)
	@echo "open: $(CURDIR)/reports/index.html"

test: $(VENV)/.installed
	$(BIN)/python -m pytest tests -q

lab: $(VENV)/.installed $(DEMO)/truth.json
	$(BIN)/jupyter lab notebooks/

bench: $(VENV)/.installed
	$(BIN)/python benchmarks/run.py

clean-demo:
	rm -rf $(DEMO) reports/demo
