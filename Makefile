# The order-status consumer. `make run` starts everything on this machine; `make test` runs
# every test.
GO    ?= go
BIN   := bin/consumer
SHELL := /bin/bash

.PHONY: run build test lint fmt clean cluster nats-server bench image image-check rules

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

# Every test, with the race detector; fuzz targets run on their seed corpus. gotestsum (pinned
# as a tool in go.mod) prints one line per package, each failure with its output, and its
# summary; it writes the whole run as go test JSON and as JUnit XML under bin/test/. The fault
# tests' figures (requests, events, duplicates, calls per window) are printed from that JSON;
# then the Prometheus rules are checked and their tests run.
TEST_OUT := bin/test
test:
	@mkdir -p $(TEST_OUT); \
	$(GO) tool gotestsum --format pkgname-and-test-fails --format-hide-empty-pkg \
	  --jsonfile $(TEST_OUT)/go-test.json --junitfile $(TEST_OUT)/junit.xml \
	  -- -race -count=1 -timeout 8m ./...; status=$$?; \
	grep -o '"Output":"[^"]*figures:[^"]*' $(TEST_OUT)/go-test.json | sed -e 's/^"Output":"[[:space:]]*//' -e 's/\\n$$//' -e 's/\\t/ /g' \
	  -e 's/\\u003e/>/g; s/\\u003c/</g; s/\\u0026/\&/g; s/\\"/"/g'; \
	passed=$$(grep '"Action":"pass"' $(TEST_OUT)/go-test.json | grep -c '"Test":'); \
	failed=$$(grep '"Action":"fail"' $(TEST_OUT)/go-test.json | grep -c '"Test":'); \
	$(MAKE) --no-print-directory rules || status=1; \
	echo "$$passed passed, $$failed failed"; \
	exit $$status

# The Prometheus alert rules: syntax, then their unit tests (promtool, Debian's prometheus).
rules:
	cd deploy/prometheus && promtool check rules orderstatus-rules.yaml && promtool test rules orderstatus-rules.test.yaml

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
	cd internal/bench/watermill && $(GO) vet ./...  # the bench's peer, a module of its own

# The FROM scratch image without a registry: the static binary from the host's Go (VERSION and
# REVISION in its -ldflags) and the host's CA certificates, assembled by buildah from
# deploy/image/Containerfile (whose only FROM is scratch), with the OCI labels version, revision
# and created from the build arguments. With a registry, `docker build .` runs the multi-stage
# Dockerfile instead (its header says which --build-arg to pass).
IMAGE         ?= localhost/orderstatus:dev
CREATED       ?= $(shell date -u +%Y-%m-%dT%H:%M:%SZ)
BUILDAH       ?= buildah
BUILDAH_FLAGS ?=
image:
	rm -rf bin/image && mkdir -p bin/image
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags="-s -w $(LDFLAGS)" -o bin/image/consumer ./cmd/consumer
	cp /etc/ssl/certs/ca-certificates.crt bin/image/
	$(BUILDAH) $(BUILDAH_FLAGS) build --quiet --isolation chroot -f deploy/image/Containerfile \
	  --build-arg VERSION=$(VERSION) --build-arg REVISION=$(REVISION) --build-arg CREATED=$(CREATED) \
	  -t $(IMAGE) bin/image

# Builds the image and runs its binary inside it, as the image's user (--version where the
# binary has it, else --help); prints the image's user, entrypoint, ports and OCI labels.
image-check: image
	@echo "image-check: $(IMAGE): $$($(BUILDAH) $(BUILDAH_FLAGS) inspect --format 'user {{.OCIv1.Config.User}}, entrypoint {{.OCIv1.Config.Entrypoint}}, ports {{.OCIv1.Config.ExposedPorts}}' $(IMAGE))"
	@$(BUILDAH) $(BUILDAH_FLAGS) inspect --format '{{range $$k, $$v := .OCIv1.Config.Labels}}{{printf "image-check: label %s=%s\n" $$k $$v}}{{end}}' $(IMAGE)
	@ctr=$$($(BUILDAH) $(BUILDAH_FLAGS) from --quiet $(IMAGE)) || exit 1; \
	  run() { $(BUILDAH) $(BUILDAH_FLAGS) run --isolation chroot $$ctr -- /consumer "$$@"; }; \
	  out=$$(run --version 2>&1) || out=$$(run --help 2>&1); status=$$?; \
	  $(BUILDAH) $(BUILDAH_FLAGS) rm $$ctr >/dev/null; \
	  if [ $$status -ne 0 ]; then echo "$$out"; echo "image-check: /consumer does not run in $(IMAGE)"; exit 1; fi; \
	  echo "image-check: /consumer runs in $(IMAGE): $$(echo "$$out" | head -1)"

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf bin .consumer-dev

# The performance table (throughput, ratio to a bare loop, latency, QPS fidelity, peak RSS, CPU
# per request, throughput on a three-process R3 cluster, provider calls saved by notifications
# and their latency to an event), then the Go micro-benchmarks.
bench: nats-server
	ORDERS_BENCH=1 $(GO) test -count=1 -run TestBench -v -timeout 10m ./internal/bench | grep -v -E '^(=== RUN|--- PASS|PASS|ok )'
	$(GO) test -run '^$$' -bench . -benchmem -benchtime 2000x ./internal/events ./internal/orderstate ./internal/providers/... ./internal/handlers
