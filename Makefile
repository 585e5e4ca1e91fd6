# Two entry points for a fresh Debian machine with Python 3.11:
#   make demo   run the demo search site
#   make test   lint, type-check and run every test
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Debian packages the integration and browser tests drive for real.
APT_PACKAGES := chromium nginx prometheus wrk caddy
APT_BINARIES := chromium nginx prometheus wrk caddy

.PHONY: demo test lint typecheck pytest system-deps bench clean

BASE_STAMP := $(VENV)/.installed-base

# The demo needs the package only; the tests need the test tools too.
$(BASE_STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	touch $(BASE_STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(BASE_STAMP) $(STAMP)

system-deps:
	@missing=""; for b in $(APT_BINARIES); do command -v $$b >/dev/null 2>&1 || [ -x /usr/sbin/$$b ] || missing="$$missing $$b"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages for:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(APT_PACKAGES) >/dev/null; \
	fi
	@# The Debian packages start services on install; the tests run their own instances.
	@-systemctl stop nginx prometheus caddy >/dev/null 2>&1; pkill -x nginx >/dev/null 2>&1; pkill -x prometheus >/dev/null 2>&1; pkill -x caddy >/dev/null 2>&1; true

demo: $(BASE_STAMP)
	$(BIN)/deterrence demo

lint: $(STAMP)
	$(BIN)/ruff check deterrence tests bench fuzz
	$(BIN)/ruff format --check deterrence tests bench fuzz

typecheck: $(STAMP)
	$(BIN)/mypy --strict deterrence

pytest: $(STAMP) system-deps
	$(BIN)/pytest

test: lint typecheck pytest

# Benchmarks print ratios measured in one run; see docs/benchmarks.md.
bench: $(STAMP) system-deps
	$(BIN)/python -m bench.quality
	$(BIN)/python -m bench.matcher
	$(BIN)/python -m bench.middleware
	$(BIN)/python -m bench.proxy
	$(BIN)/python -m bench.soak

clean:
	rm -rf $(VENV) build dist .mypy_cache .pytest_cache .ruff_cache test-artifacts
