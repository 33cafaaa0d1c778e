# The two README commands:  `make book` (build the book; PROFILE=cpu|smoke|paper, DATA=... for paper)
#                           `make test` (set up and run the tests; what .ci/run calls)
PYTHON   ?= python3
VENV     := .venv
PY       := $(VENV)/bin/python
PROFILE  ?= cpu
DATA     ?=
RUNS     ?= runs
STAMP    := $(VENV)/.installed

.PHONY: book test notebooks html benchmark clean

$(STAMP): requirements.txt pyproject.toml
	@# first use: a local .venv with the pinned stack (torch 2.14.1 comes from this machine's disk)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	$(PY) -m ipykernel install --sys-prefix --name clipmem --display-name "clipmem (.venv)" >/dev/null
	touch $(STAMP)

notebooks: $(STAMP)
	$(PY) -m clipmem_lib.book run --profile $(PROFILE) $(if $(DATA),--data $(DATA)) --runs $(RUNS)

html: $(STAMP)
	$(VENV)/bin/jupyter-book build . -W -n --keep-going

book: notebooks html

# nbval re-runs the chapters at their defaults; Sec. 4.5 (seven models, ~10 min) is only smoke-run, to keep CI short.
test: $(STAMP)
	$(PY) -m pytest -q tests notebooks --nbval-lax --nbval-current-env --ignore=notebooks/04_between.ipynb

benchmark: $(STAMP)
	$(PY) benchmarks/train_throughput.py

clean:
	rm -rf _build book/generated
