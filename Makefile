# saga shop — developer entry points. `make` alone lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help
.PHONY: help run stop test bench chaos fuzz fmt lint clean-state

help: ## list the targets
	@echo "usage: make <target>"
	@grep -E '^[a-z][a-z-]*:.*## ' $(MAKEFILE_LIST) | sed -E 's/^([a-z-]+):.*## (.*)/  \1\t\2/' | expand -t 16

run: ## build and start the whole shop on 127.0.0.1 (gateway :8080); Ctrl-C stops it
	@bash scripts/run.sh

stop: ## stop a stack started by `make run` / `scripts/run.sh --background`
	@bash scripts/stop.sh

test: ## fmt, clippy, nextest (private Postgres/Redis), deploy lint, end-to-end, newman, browser, fuzz, chaos --short
	@bash scripts/test.sh

bench: ## load benchmark (scripts/bench.sh)
	@if [ -f scripts/bench.sh ]; then bash scripts/bench.sh; else echo "make bench: not yet implemented (scripts/bench.sh is missing)" >&2; exit 1; fi

chaos: ## failure-injection run (scripts/chaos.sh)
	@if [ -f scripts/chaos.sh ]; then bash scripts/chaos.sh; else echo "make chaos: not yet implemented (scripts/chaos.sh is missing)" >&2; exit 1; fi

fuzz: ## schemathesis from the OpenAPI document: >= 10,000 requests against a stack of its own (scripts/fuzz.sh)
	@bash scripts/fuzz.sh

fmt: ## cargo fmt
	cargo fmt --all

lint: ## cargo fmt --check, clippy -D warnings, shellcheck (if installed)
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	@if command -v shellcheck >/dev/null; then shellcheck -x -P scripts scripts/*.sh .ci/run && echo "shellcheck OK"; else echo "shellcheck not installed: skipped"; fi

clean-state: ## stop every local stack and remove .state/
	@bash scripts/stop.sh --clean
	@rm -rf .state
