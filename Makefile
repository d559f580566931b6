# Two entry points (see README): `make book` builds the HTML book, `make test` runs every test.
# Both create .venv and install what they need on first use.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
# The CPU build of torch 2.13.0 (installed first, so that nodelib's range `torch>=2.2` adds nothing).
TORCH  ?= torch==2.13.0

.PHONY: book test unit notebooks html browser browser-deps clean

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
	$(BIN)/python -m pytest --doctest-modules nodelib -p no:cacheprovider   # the reference's examples

notebooks: $(STAMP)
	$(BIN)/python -m pytest --nbval book/ --nbval-sanitize-with book/nbval_sanitize.cfg \
	  --nbval-current-env --nbval-cell-timeout=300 -p no:cacheprovider

# The browser test (tests/browser, after `make html`): every page in headless Chromium, with
# MathJax served from a local copy. Installs Debian's chromium + chromium-driver (skipped if
# present) and the npm package mathjax@3 into .venv/npm.
MATHJAX := $(VENV)/npm/node_modules/mathjax/es5/tex-mml-chtml.js
SUDO    := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

browser-deps:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  { $(SUDO) apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium chromium-driver; }

$(MATHJAX): | $(STAMP)
	@command -v npm >/dev/null || \
	  { $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq npm; }
	npm install --prefix $(VENV)/npm --no-audit --no-fund --silent mathjax@3.2.2

browser: $(STAMP) $(MATHJAX) browser-deps
	$(BIN)/python -m pytest tests/browser -m browser -p no:cacheprovider

test: $(STAMP)
	@start=$$(date +%s); \
	$(MAKE) --no-print-directory unit && \
	$(MAKE) --no-print-directory notebooks && \
	$(MAKE) --no-print-directory html && \
	$(MAKE) --no-print-directory browser && \
	echo "make test: all passed in $$(( $$(date +%s) - start )) s"

clean:
	rm -rf _build
