# hopper: run `make help` for the targets.
SHELL := /bin/bash
export PATH := $(PATH):/usr/local/go/bin:$(HOME)/go/bin
GO ?= go
BIN := bin/hopper
VERSION := $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
LDFLAGS := -s -w -X main.version=$(VERSION)
FUZZTIME ?= 5s

.PHONY: help run build test test-deps unit cross fuzz fuzz-short lint bench bench-peers bench-go

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

build: ## build bin/hopper
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/hopper

run: build ## build and start hopper on 127.0.0.1:8080 (direct egress)
	./$(BIN) serve $(ARGS)

test: test-deps lint cross unit fuzz-short ## install test dependencies if missing, then lint, cross builds, race tests and a short fuzz run

test-deps: ## install what the tests need (curl, strace, ...) when missing
	@bash .ci/deps

unit: ## go test -race on every package
	$(GO) test -race -count=1 -timeout 12m ./...

cross: ## hopper builds for macOS and Windows too (Linux is where it is tested)
	GOOS=darwin GOARCH=arm64 $(GO) build -o /dev/null ./cmd/hopper
	GOOS=windows GOARCH=amd64 $(GO) build -o /dev/null ./cmd/hopper

fuzz-short: ## every fuzz target for FUZZTIME (5s)
	@FUZZTIME=$(FUZZTIME) GO=$(GO) bash .ci/fuzz

fuzz: ## every fuzz target for 30s
	@FUZZTIME=30s GO=$(GO) bash .ci/fuzz

lint: ## gofmt and go vet (staticcheck too when installed)
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	@if command -v staticcheck >/dev/null; then staticcheck ./...; fi

bench: ## hopper against direct (and tinyproxy/dante/glider when installed) on loopback; writes bench/RESULTS.md
	$(GO) run ./bench/cmd/hopper-bench $(ARGS)

bench-peers: ## install tinyproxy and dante-server and build glider so make bench measures them too
	@bash bench/peers.sh

bench-go: ## Go microbenchmarks (parsers, selector, relay, ...) with direct baselines; compare runs with benchstat
	$(GO) test -run='^$$' -bench=. -benchtime=1s ./...

.PHONY: soak
soak: ## 5 minutes of 200 clients churning through faulty upstreams (not in make test)
	$(GO) run ./bench/cmd/hopper-soak -duration $(or $(SOAK_DURATION),5m) -clients 200
