# Distretto — the two commands: `make up` (run the platform) and `make test` (run every test).
SHELL := /bin/bash
.DEFAULT_GOAL := help
UV = $(shell command -v uv 2>/dev/null || echo $(HOME)/.local/bin/uv)
export UV_LINK_MODE ?= copy

.PHONY: help bootstrap bootstrap-browser up down status secrets test test-cluster test-fast schemathesis lint bench bench-backbone bench-newsletter bench-matchmaking bench-gateway bench-console bench-partners bench-recovery clean

help:
	@echo "make up      start Kafka, every service, the gateway, the mail catcher, Prometheus and Alertmanager; load the demo data"
	@echo "make down    stop all of it"
	@echo "make secrets write .env with this installation's secrets for docker compose"
	@echo "make test    run every test (real Kafka; SQLite and PostgreSQL; schemathesis, 5 examples an operation)"
	@echo "make test-cluster  two instances of every service on PostgreSQL, a three-broker Kafka, kill -9 in mid-stream"
	@echo "make schemathesis  schemathesis alone, thoroughly (50 examples an operation from a seed)"
	@echo "make lint    ruff + mypy + deptry (every import declared, no dependency unused)"
	@echo "make bench   run the benchmarks (figures printed side by side with their baselines)"

# uv, the virtual environment, Java 17 + Maven and the Kafka jars. The bytecode is compiled at install:
# where none is ever written (PYTHONDONTWRITEBYTECODE, read-only trees) every start would compile every
# library from source again (bench/recovery: several seconds of each service's start).
bootstrap:
	@command -v uv >/dev/null 2>&1 || [ -x "$(UV)" ] || { echo "installing uv with pip"; python3 -m pip install --quiet --user uv || python3 -m pip install --quiet --break-system-packages uv; }
	@$(UV) sync --frozen --quiet --compile-bytecode
	@bash deploy/bootstrap-java.sh
	@bash deploy/bootstrap-monitoring.sh
	@$(UV) run --no-sync distretto-kafka fetch

up: bootstrap
	@$(UV) run --no-sync python deploy/stack.py up

down:
	@$(UV) run --no-sync python deploy/stack.py down

status:
	@$(UV) run --no-sync python deploy/stack.py status

# docker-compose.yml has no default for any secret: this writes them (once per installation) to .env.
secrets:
	@$(UV) sync --frozen --quiet
	@$(UV) run --no-sync python deploy/stack.py secrets

# PostgreSQL: DISTRETTO_TEST_POSTGRES_URL if given, else a local server started by
# deploy/postgres/ensure-postgres.sh where it can (root + Debian packages).
# The console's browser tests drive Debian's Chromium (installed here when missing and root).
bootstrap-browser:
	@bash deploy/bootstrap-browser.sh

test: bootstrap bootstrap-browser
	@bash deploy/bootstrap-kcat.sh
	@$(UV) run --no-sync python deploy/k8s/strimzi_crds.py  # Strimzi's CRD schemas for tests/platform/test_k8s.py
	@url="$${DISTRETTO_TEST_POSTGRES_URL:-}"; \
	if [ -z "$$url" ]; then url=$$(bash deploy/postgres/ensure-postgres.sh | tail -n1) || url=""; fi; \
	if [ -z "$$url" ]; then echo "make test: no PostgreSQL; its variants will be reported as skipped"; fi; \
	DISTRETTO_TEST_POSTGRES_URL="$$url" $(UV) run --no-sync python deploy/run_tests.py $(PYTEST_ARGS)

# tests/cluster: a three-node KRaft cluster, two instances of every service on PostgreSQL, a broker and
# instances killed in the middle of a stream of work; every effect checked exactly once (README, Running at scale).
test-cluster: bootstrap
	@url="$${DISTRETTO_TEST_POSTGRES_URL:-}"; \
	if [ -z "$$url" ]; then url=$$(bash deploy/postgres/ensure-postgres.sh | tail -n1) || url=""; fi; \
	if [ -z "$$url" ]; then echo "make test-cluster: needs PostgreSQL (DISTRETTO_TEST_POSTGRES_URL)"; exit 1; fi; \
	DISTRETTO_TEST_POSTGRES_URL="$$url" $(UV) run --no-sync pytest tests/cluster -q $(PYTEST_ARGS)

# schemathesis (every check) against each service and the gateway as real processes, thoroughly:
# 50 examples per operation from a seed (`make test` runs 5, derandomised). docs/api-conventions.md.
SCHEMATHESIS_EXAMPLES ?= 50
SCHEMATHESIS_SEED ?= 20261204
schemathesis: bootstrap
	@DISTRETTO_SCHEMATHESIS_EXAMPLES=$(SCHEMATHESIS_EXAMPLES) DISTRETTO_SCHEMATHESIS_SEED=$(SCHEMATHESIS_SEED) \
	DISTRETTO_SCHEMATHESIS_SECONDS=$${DISTRETTO_SCHEMATHESIS_SECONDS:-600} \
	$(UV) run --no-sync pytest tests/api/test_schemathesis.py -q $(PYTEST_ARGS)

lint:
	@$(UV) run --no-sync ruff check .
	@$(UV) run --no-sync ruff format --check .
	@$(UV) run --no-sync mypy shared/src dev/src services/*/src
	@for p in shared dev services/*; do printf "deptry %s: " $$p; (cd $$p && $(UV) run --no-sync deptry src --no-ansi 2>&1 | grep -v "^Scanning\|^Assuming\|^$$" ; exit $${PIPESTATUS[0]}) || exit 1; done

bench: bench-backbone bench-newsletter bench-matchmaking bench-gateway bench-console bench-partners bench-recovery

bench-backbone: bootstrap
	@$(UV) run --no-sync python bench/backbone/run.py

bench-newsletter: bootstrap
	@$(UV) run --no-sync python bench/newsletter/run.py

bench-matchmaking: bootstrap
	@$(UV) run --no-sync python bench/matchmaking/quality.py
	@$(UV) run --no-sync python bench/matchmaking/latency.py

bench-gateway: bootstrap
	@$(UV) run --no-sync python bench/gateway/run.py

bench-console: bootstrap
	@$(UV) run --no-sync python bench/console/run.py

bench-partners: bootstrap
	@$(UV) run --no-sync python bench/partners/run.py

bench-services: bootstrap
	@$(UV) run --no-sync python bench/services/run.py

bench-recovery: bootstrap
	@$(UV) run --no-sync python bench/recovery/run.py

clean: down
	rm -rf var
