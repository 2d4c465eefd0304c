# The order-status consumer. `make run` starts everything on this machine; `make test` runs
# every test.
GO    ?= go
BIN   := bin/consumer
SHELL := /bin/bash

.PHONY: run build test lint fmt clean cluster nats-server bench

run: build ## run NATS, the provider sandboxes and the service on this machine
	$(BIN) dev

# The version is the latest v* tag, else the short revision (either with -dirty for uncommitted
# changes); it and the revision land in `consumer version`, the orders_build_info metric and the
# micro service's version.
VERSION  ?= $(shell git describe --tags --match 'v*' --dirty 2>/dev/null || git describe --always --dirty 2>/dev/null || echo dev)
REVISION ?= $(shell git rev-parse HEAD 2>/dev/null)
LDFLAGS  := -X github.com/paystatus/orderstatus/internal/buildinfo.version=$(VERSION) \
            -X github.com/paystatus/orderstatus/internal/buildinfo.revision=$(REVISION)

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/consumer

# Every test, with the race detector; fuzz targets run on their seed corpus. The fault tests'
# figures (requests, events, duplicates, calls per window) are printed; on a failure the whole
# log is.
test:
	@log=$$(mktemp); \
	$(GO) test -race -count=1 -timeout 8m -v ./... > $$log 2>&1; status=$$?; \
	grep -E '^(ok|FAIL|---|panic:)|figures:' $$log | grep -v -- '--- PASS' | grep -v -- '--- SKIP'; \
	if [ $$status -ne 0 ]; then echo; echo "== full test log =="; cat $$log; fi; \
	passed=$$(grep -c -- '--- PASS' $$log); failed=$$(grep -c -- '--- FAIL' $$log); \
	echo "$$passed passed, $$failed failed"; \
	rm -f $$log; exit $$status

# A real three-process cluster from deploy/nats, the streams and consumer added from its
# definition files, and the consumer against it with nats.replicas: 3.
cluster: nats-server
	$(GO) test -count=1 -run TestClusterFromDeployFiles -v ./cmd/consumer

# The nats-server binary, at the version go.mod pins, from the module cache.
nats-server:
	@command -v nats-server >/dev/null || [ -x "$$($(GO) env GOPATH)/bin/nats-server" ] || $(GO) install github.com/nats-io/nats-server/v2

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) tool staticcheck ./...

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf bin .consumer-dev

# The performance table (throughput, ratio to a bare loop, latency, QPS fidelity, peak RSS, CPU
# per request), then the Go micro-benchmarks.
bench:
	ORDERS_BENCH=1 $(GO) test -count=1 -run TestBench -v -timeout 5m ./internal/bench | grep -v -E '^(=== RUN|--- PASS|PASS|ok )'
	$(GO) test -run '^$$' -bench . -benchmem -benchtime 2000x ./internal/events ./internal/providers/... ./internal/handlers
