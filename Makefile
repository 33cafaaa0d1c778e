# The two README commands:  `make book` (build the book; PROFILE=cpu|smoke|paper, DATA=... for paper)
#                           `make test` (set up and run the tests; what .ci/run calls)
PYTHON   ?= python3
VENV     := .venv
PY       := $(VENV)/bin/python
PROFILE  ?= cpu
DATA     ?=
RUNS     ?= runs
STAMP    := $(VENV)/.installed

.PHONY: book test test-fast params notebooks html benchmark clean

$(STAMP): requirements.txt pyproject.toml
	@# first use: a local .venv with the pinned stack (torch 2.14.1 comes from this machine's disk)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	@# pip byte-compiles every file one at a time; compileall does it on every core (13 s less here)
	$(PY) -m pip install -q --no-compile -r requirements.txt
	$(PY) -m compileall -q -j 0 $$($(PY) -c "import sysconfig; print(sysconfig.get_paths()['purelib'])") >/dev/null || true
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	$(PY) -m ipykernel install --sys-prefix --name clipmem --display-name "clipmem (.venv)" >/dev/null
	@# Debian's Chromium (browser tests), Noto CJK and Unihan (the audit's CJK set) and openclipart's SVGs and
	@# PNGs (the openclipart set), where apt-get runs as root; without them those tests and benchmarks skip, saying so
	@{ command -v chromium && [ -f /usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc ] && \
	  [ -f /usr/share/unicode/Unihan_Readings.txt.bz2 ] && [ -d /usr/share/openclipart/svg ] && \
	  [ -d /usr/share/openclipart/png ]; } >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  apt-get install -y -q chromium fonts-noto-cjk unicode-data openclipart-svg openclipart-png >/dev/null 2>&1; } || \
	  echo "Chromium, fonts-noto-cjk, unicode-data, openclipart-svg or openclipart-png not installed: the tests that need them will skip"
	touch $(STAMP)

notebooks: $(STAMP)
	$(PY) -m clipmem_lib.book run --profile $(PROFILE) $(if $(DATA),--data $(DATA)) --runs $(RUNS)

html: $(STAMP)
	$(PY) -m clipmem_lib.book static
	$(VENV)/bin/jupyter-book build . -W -n --keep-going

book: notebooks html

# nbval re-runs chapters 01-03 at their defaults; Sec. 4.4-4.6, the appendix and the audit (7 to 80 models each) are only smoke-run, to keep CI short.
HEAVY := 04_modality 05_between 06_mitigation 07_removal 08_appendix 09_audit
test: $(STAMP)
	$(PY) -m pytest -q tests notebooks --nbval-lax --nbval-current-env $(foreach n,$(HEAVY),--ignore=notebooks/$(n).ipynb)

# The edit loop: unit tests only (no training beyond a few steps, no notebooks); under a minute on 2 cores.
test-fast: $(STAMP)
	$(PY) -m pytest -q tests -m "not slow"

# Regenerate the notebooks' parameters cells from the one schema (clipmem_lib/schema.py).
params: $(STAMP)
	$(PY) -m clipmem_lib.book params

benchmark: $(STAMP)
	$(PY) benchmarks/train_throughput.py

clean:
	rm -rf _build book/generated
