# mediacdr — the two commands a newcomer needs are `make up` and `make test`.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: up down test test-rebalance soak bench lint unit venv deps kafka-jars postgres chromium status clean

## make up: set everything up and run mediacdr locally (Kafka, detector, sample events).
up: deps kafka-jars
	@bash scripts/up.sh

## make down: stop everything `make up` started.
down:
	@bash scripts/down.sh

## make test: set everything up and run the whole suite (lint, unit, contract, integration, e2e).
test: deps kafka-jars postgres chromium lint
	$(BIN)/python -m pytest tests

## make soak: 30 minutes of simulator load with faults, then the invariants (SOAK_MINUTES=…).
SOAK_MINUTES ?= 30
soak: deps kafka-jars postgres
	$(BIN)/python -m tests.support.soak --minutes $(SOAK_MINUTES)

## make bench: the benchmark suite on a local broker and PostgreSQL → docs/BENCHMARKS.md.
bench: deps kafka-jars postgres
	$(BIN)/python -m benchmarks --size full --runs 3 --output docs/BENCHMARKS.md

lint: deps
	$(BIN)/ruff check services tests migrations benchmarks
	$(BIN)/ruff format --check services tests migrations benchmarks
	$(BIN)/mypy

## make test-rebalance: only the multi-worker rebalance tests (they are part of `make test` too).
test-rebalance: deps kafka-jars
	$(BIN)/python -m pytest tests/e2e -m rebalance

unit: deps
	$(BIN)/python -m pytest tests/unit tests/contract

venv: $(STAMP)
deps: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip==26.3"
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	touch $(STAMP)

kafka-jars: deps
	$(BIN)/mediacdr kafka fetch

postgres:
	bash scripts/ensure-postgres.sh

chromium:
	bash scripts/ensure-chromium.sh

status: deps
	$(BIN)/mediacdr kafka status

clean: down
	rm -rf var
