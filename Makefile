# loadcap: build, test (against real servers on loopback), bench, lint.
SHELL := /bin/bash
GO ?= go
TESTENV := scripts/testenv.sh
ENV_FILE := $(or $(LOADCAP_TESTENV_DIR),.testenv)/env
TEST_TIMEOUT ?= 14m
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)

.PHONY: build test bench lint fmt-check vet soak soak-exporter

## build: the loadcap binary in bin/
build:
	$(GO) build -ldflags "-X main.version=$(VERSION)" -o bin/loadcap ./cmd/loadcap

## lint: gofmt (fails listing the unformatted files) and go vet
lint: fmt-check vet

fmt-check:
	@files=$$(git ls-files --cached --others --exclude-standard -- '*.go' | \
		while read -r f; do [ -f "$$f" ] && echo "$$f"; done | xargs -r gofmt -l); \
	if [ -n "$$files" ]; then echo "gofmt: these files need formatting (gofmt -w):"; echo "$$files"; exit 1; fi

vet:
	$(GO) vet ./...

## test: lint, start the test servers (scripts/testenv.sh up), run every
## test with LOADCAP_REQUIRE_SERVERS=1, stop the servers even on failure or
## interrupt, exit with the tests' status.
test: lint
	@status=0; \
	trap '$(TESTENV) down' EXIT; \
	trap 'exit 130' INT; trap 'exit 143' TERM; \
	$(TESTENV) up || exit 1; \
	set -a; . "$(abspath $(ENV_FILE))" || exit 1; set +a; \
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) ./... || status=$$?; \
	exit $$status

## bench: the Go benchmarks (with allocations), then loadcap against its
## peers measured in the same run on this machine: vegeta (built from the
## module version in go.mod) and wrk on the HTTP path, pgbench on the SQL path.
bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...
	@command -v wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk; }
	$(GO) run ./internal/peerbench
	bash scripts/bench-sql.sh

## soak: 10 minutes at a steady rate against the embedded sink; prints RSS,
## goroutines and heap every 30 s and fails if they grow by more than 10 % (not part of test).
## 64 workers (the keepalive pool's size), fixed: load spikes on a shared
## machine then cannot grow the worker pool and pass for a leak.
soak:
	$(GO) run ./internal/soak -duration 10m -every 30s -workers 64

## soak-exporter: `loadcap sample --listen` for 10 minutes at ~30,000 sockets in
## a throw-away namespace (needs root); prints its RSS, CPU share and CPU per
## sample every 30 s and fails if RSS grows by more than 10 % (not part of test).
soak-exporter: build
	$(GO) run ./internal/exportersoak -exe bin/loadcap -duration 10m -every 30s
