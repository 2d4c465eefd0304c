# The order-status consumer. `make run` starts everything on this machine; `make test` runs
# every test.
GO        ?= go
BIN       := bin/consumer
# Packages whose tests exercise concurrency run under the race detector.
PKGS      := ./...

.PHONY: run build test lint fmt clean

run: build ## run NATS, the provider sandboxes and the service on this machine
	$(BIN) dev

build:
	$(GO) build -o $(BIN) ./cmd/consumer

test: ## every test, with the race detector, fuzz targets on their seed corpus
	$(GO) test -race -count=1 -timeout 8m $(PKGS)

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	$(GO) tool staticcheck $(PKGS)

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf bin .consumer-dev
