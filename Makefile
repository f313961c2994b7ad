# Sluice: `make run` starts the gateway with its embedded Kafka; `make test` runs every test.
GO      ?= go
BIN     := bin/sluice
PKGS    := ./...

.PHONY: all build run test test-short vet fmt fuzz clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/sluice

run: build
	./$(BIN) serve

# Every test, with the race detector (the process-level tests build the binary themselves).
test: vet
	$(GO) test -race -count=1 -timeout 20m $(PKGS)

test-short:
	$(GO) test -short -count=1 $(PKGS)

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))" || { echo "gofmt needed:"; gofmt -l .; exit 1; }
	$(GO) vet $(PKGS)

# Short fuzzing of every decoder (FUZZTIME=5m for a real campaign).
FUZZTIME ?= 30s
fuzz:
	$(GO) test ./buffer -run='^$$' -fuzz=FuzzDecodeRecord -fuzztime=$(FUZZTIME)
	$(GO) test ./gateway -run='^$$' -fuzz=FuzzSplitBody -fuzztime=$(FUZZTIME)

clean:
	rm -rf bin
