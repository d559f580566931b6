# Two entry points (see README): `make book` builds the HTML book, `make test` runs every test.
# Both create .venv and install what they need on first use.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
# The CPU build of torch 2.13.0 (installed first, so that nodelib's range `torch>=2.2` adds nothing).
TORCH  ?= torch==2.13.0

.PHONY: book test unit notebooks html clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[test]"
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

book: $(STAMP) html

html:
	$(BIN)/jupyter-book build . --builder html -n -W --keep-going

unit: $(STAMP)
	$(BIN)/python -m pytest tests

notebooks: $(STAMP)
	$(BIN)/python -m pytest --nbval book/ --nbval-sanitize-with book/nbval_sanitize.cfg \
	  --nbval-current-env --nbval-cell-timeout=300 -p no:cacheprovider

test: $(STAMP)
	@start=$$(date +%s); \
	$(MAKE) --no-print-directory unit && \
	$(MAKE) --no-print-directory notebooks && \
	$(MAKE) --no-print-directory html && \
	echo "make test: all passed in $$(( $$(date +%s) - start )) s"

clean:
	rm -rf _build
