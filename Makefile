# make run / make test are all the set-up a new machine needs.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
LOAD_STAMP := $(VENV)/.installed-load
NODE_STAMP := tests/node/node_modules/.installed
JS_STAMP   := sdk/js/node_modules/.installed
BROWSER_STAMP := tests/browser/node_modules/.installed

.PHONY: install run test bench bench-state loadtest-leaderboard loadtest-matchmaker lint clean

install: $(STAMP)

$(STAMP): pyproject.toml sdk/python/pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e '.[dev]' -e ./sdk/python
	touch $@

# locust: the load tests' users, which the test suite runs briefly
$(LOAD_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e '.[load]'
	touch $@

# What the tests need beyond Python: node/npm, and Debian's Chromium for tests/browser
# (a browser download cannot work here). As root, make installs what is missing with apt;
# otherwise it stops and prints the command to run.
CHROMIUM ?= /usr/bin/chromium
APT_INSTALL := apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq
need = { if [ "$$(id -u)" = 0 ]; then echo "installing $(1) with apt-get"; $(APT_INSTALL) $(1); \
	else echo "make test needs $(1); install it with:" >&2; \
	echo "  sudo apt-get update && sudo apt-get install -y $(1)" >&2; \
	exit 1; fi; }

.PHONY: need-node need-chromium
need-node:
	@command -v node >/dev/null && command -v npm >/dev/null || $(call need,nodejs npm)

need-chromium:
	@test -x $(CHROMIUM) || $(call need,chromium)

$(NODE_STAMP): tests/node/package.json tests/node/package-lock.json | need-node
	cd tests/node && npm ci --no-audit --no-fund --loglevel=error
	touch $@

$(JS_STAMP): sdk/js/package.json sdk/js/package-lock.json | need-node
	cd sdk/js && npm ci --no-audit --no-fund --loglevel=error
	touch $@

# playwright-core drives Debian's /usr/bin/chromium (need-chromium installs it): no browser download
$(BROWSER_STAMP): tests/browser/package.json tests/browser/package-lock.json | need-node
	cd tests/browser && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error
	touch $@

run: install
	$(VENV)/bin/stadium dev

test: need-node need-chromium install $(LOAD_STAMP) $(NODE_STAMP) $(JS_STAMP) $(BROWSER_STAMP)
	$(PY) -m pytest -q
	node --test sdk/js/test/
	node --test tests/browser/

bench: install
	$(PY) -m loadtest.fanout $(BENCH_ARGS)

bench-state: install
	$(PY) -m loadtest.state $(BENCH_ARGS)

loadtest-leaderboard: $(LOAD_STAMP)
	$(PY) -m loadtest.leaderboard.locust_run $(LOADTEST_ARGS)

loadtest-matchmaker: $(LOAD_STAMP)
	$(PY) -m loadtest.matchmaker.locust_run $(LOADTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check relay stadium matchmaker leaderboard sdk/python tests loadtest
	$(VENV)/bin/mypy --strict relay stadium matchmaker leaderboard sdk/python/stadium_client
	$(VENV)/bin/lint-imports

clean:
	rm -rf $(VENV) tests/node/node_modules tests/browser/node_modules .pytest_cache
