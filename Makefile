# Sluice: `make run` starts the gateway with its embedded Kafka; `make test` runs every test.
GO      ?= go
BIN     := bin/sluice
PKGS    := ./...

.PHONY: browser-deps bench-backlog bench-faults all build run test test-short vet fmt fuzz k6 loadtest bench clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/sluice

run: build
	./$(BIN) serve

# Every test, with the race detector (the process-level tests build the binary themselves).
test: vet
	$(GO) test -race -count=1 -timeout 5m $(PKGS)

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
	$(GO) test ./gateway -run='^$$' -fuzz=FuzzPixelEvent -fuzztime=$(FUZZTIME)
	$(GO) test ./gateway -run='^$$' -fuzz=FuzzGunzipCapped -fuzztime=$(FUZZTIME)
	$(GO) test ./gateway -run='^$$' -fuzz=FuzzUnzstdCapped -fuzztime=$(FUZZTIME)
	$(GO) test ./gateway -run='^$$' -fuzz=FuzzUrlencodedEvents -fuzztime=$(FUZZTIME)
	$(GO) test ./gateway -run='^$$' -fuzz=FuzzMultipartEvents -fuzztime=$(FUZZTIME)
	$(GO) test ./enrich -run='^$$' -fuzz=FuzzValidate -fuzztime=$(FUZZTIME)
	$(GO) test ./buffer -run='^$$' -fuzz=FuzzRecover -fuzztime=$(FUZZTIME)

# Debian's Chromium for the browser end-to-end test (gateway TestBrowserTransports,
# which is skipped without it outside CI). .ci/run calls this before make test.
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)
browser-deps:
	@command -v chromium >/dev/null 2>&1 || { \
		export DEBIAN_FRONTEND=noninteractive; \
		$(SUDO) apt-get install -y -q chromium >/dev/null || \
		{ $(SUDO) apt-get update -q >/dev/null && $(SUDO) apt-get install -y -q chromium >/dev/null; }; }
	@chromium --version

# k6, pinned, built from source with go install into ./bin (about 2 minutes the first time).
K6_VERSION ?= v1.8.1
K6         := bin/k6
k6: $(K6)
$(K6):
	GOBIN=$(CURDIR)/bin $(GO) install go.k6.io/k6@$(K6_VERSION)

# The steady k6 script against a local `sluice serve` (started and stopped by the script).
loadtest: build k6
	./loadtest/k6/run-local.sh steady

# The benchmark harness: Sluice vs a no-op fasthttp server under the same open-loop load,
# Kafka fault scenarios, report and plots in loadtest/results/<timestamp>/.
bench:
	$(GO) run ./loadtest/cmd/bench -out loadtest/results/$$(date -u +%Y%m%dT%H%M%SZ)

# 5 million events built during a Kafka outage and drained under live load
# (~2 minutes, 4-5 GB of WAL): RSS, drain rate, live latency, acked vs found.
bench-backlog:
	$(GO) run ./loadtest/cmd/bench -kinds '' -scenarios backlog -out loadtest/results/$$(date -u +%Y%m%dT%H%M%SZ)

# Every Kafka fault scenario (outage, slow broker, leader shuffles, a broker removed and
# added back, partitions increased, restart) three times at 5 000 events/s (~25 minutes):
# p99 before/during/after and their ratios, backlog, drain, acked vs found, per-key order.
# Every fault scenario FAULT_RUNS times (about 8 minutes a round); the report
# gives each run's ratios, their medians and the pooled p99s.
FAULT_RUNS ?= 5
bench-faults:
	$(GO) run ./loadtest/cmd/bench -kinds '' -scenario-rate 5000 -scenario-runs $(FAULT_RUNS) \
		-scenarios healthy,outage,slow,shuffles,nodes,partitions,restart -out loadtest/results/$$(date -u +%Y%m%dT%H%M%SZ)

clean:
	rm -rf bin
