# Two commands do everything on a fresh machine: `make run` and `make test`.
# `make run` installs the runtime only (requirements.txt); tests, lint and benchmarks add
# requirements-dev.txt (pytest, ruff, Playwright, the benchmark's peers).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/pip install --quiet --disable-pip-version-check
RUNTIME := $(VENV)/.runtime-installed
DEV := $(VENV)/.dev-installed

.PHONY: run test lint format bench chaos clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(RUNTIME): requirements.txt | $(BIN)/python
	$(PIP) -r requirements.txt
	touch $(RUNTIME)

$(DEV): $(RUNTIME) requirements-dev.txt
	$(PIP) -r requirements-dev.txt
	touch $(DEV)

# The server on QREVENTS_BIND (127.0.0.1:8000) and the simulated bank on the next port, the
# demo account linked to it; Ctrl-C stops both.
run: $(RUNTIME)
	$(BIN)/flask --app app migrate
	$(BIN)/flask --app app demo --serve

# The tests' npm packages, as pinned by the lock file: the EventSource client of
# tests/test_real_clients.py, axe-core for tests/test_dashboard_day.py.
tests/js/node_modules/.package-lock.json: tests/js/package-lock.json
	cd tests/js && npm ci --prefer-offline --no-audit --no-fund --loglevel=error

# Three test processes, each file kept whole in one of them. Most tests wait on live
# servers, so on two cores three processes keep both busy: the whole suite takes about 7
# minutes (two processes: 10.5, with the cores idle 45 % of the time).
test: $(DEV) lint tests/js/node_modules/.package-lock.json
	$(BIN)/pytest -n 3 --dist loadfile --durations=20

lint: $(DEV)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(DEV)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Full scale takes about 20 minutes on 2 cores; `make bench BENCH_ARGS=--quick` for a look.
# The nchan yardstick is nginx's module from Debian: installed here when missing (as root).
NCHAN_MODULE := /usr/lib/nginx/modules/ngx_nchan_module.so
NCHAN_APT := apt-get install -y libnginx-mod-nchan

bench: $(DEV) $(NCHAN_MODULE)
	$(BIN)/python -m bench $(BENCH_ARGS)

$(NCHAN_MODULE):
	@[ "$$(id -u)" = 0 ] || { echo "make bench needs nginx's nchan module: sudo $(NCHAN_APT)" >&2; exit 1; }
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(NCHAN_APT) -qq

# Two hosts (network namespaces) of two workers behind nginx, on private PostgreSQL and Redis,
# 2,000 streams and 200 payments/s while workers, Redis, PostgreSQL, nginx and the network fail
# at random; then every stream and the ledger are checked. As root; about 7 minutes in all.
CHAOS_SECONDS ?= 300
IPTABLES_APT := apt-get install -y iptables

chaos: $(DEV) /usr/sbin/iptables
	@[ "$$(id -u)" = 0 ] || { echo "make chaos makes network namespaces: run it as root" >&2; exit 1; }
	$(BIN)/python -m chaos --seconds $(CHAOS_SECONDS) $(CHAOS_ARGS)

/usr/sbin/iptables:
	@[ "$$(id -u)" = 0 ] || { echo "make chaos needs iptables: sudo $(IPTABLES_APT)" >&2; exit 1; }
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(IPTABLES_APT) -qq

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
