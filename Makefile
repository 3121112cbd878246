# sigsumd: build, test, lint, fuzz. `make test` is the command CI runs (through .ci/run).
GO        ?= go
FUZZTIME  ?= 10s
# Extra flags for go test, e.g. GOTESTFLAGS=-v (CI) or GOTESTFLAGS='-run TestVectors'.
GOTESTFLAGS ?=

.PHONY: all build test lint fuzz
all: lint build test

build:
	$(GO) build -o bin/ ./cmd/...

test:
	$(GO) test -race -count=1 -timeout 30m $(GOTESTFLAGS) ./...

lint:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt would change:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...

# Runs every fuzz target of every package for FUZZTIME each (scripts/fuzz.sh).
fuzz:
	FUZZTIME=$(FUZZTIME) GO=$(GO) ./scripts/fuzz.sh

# Starts a local primary and two secondaries on loopback (state in ./demo).
.PHONY: demo
demo: build
	./scripts/demo.sh

# Load benchmark: a primary + one secondary on SQLite on loopback, sigsum-bench at c = 1, 8, 64 (see scripts/bench.sh).
.PHONY: bench
bench: build
	./scripts/bench.sh

# Scale measurements (issue #9): read rps, p50/p99 and the primary's RSS at 10^3..10^6 leaves, then how long a fresh
# secondary takes to catch up with SCALE_LEAVES (default 10^6) leaves (see scripts/scale.sh). The fill alone takes a
# while on 2 cores; SCALE_LEAVES=10000 is a quick check.
.PHONY: scale
scale: build
	./scripts/scale.sh

# Reliability drills (integration/drill_*_test.go): SIGKILLs under load (crash), fault-injecting proxies between the
# nodes (partition), a full and a read-only data directory (disk; mounts a tmpfs, so it needs root), malformed
# requests and forged secondary heads (bad input). Each prints its figures on a line of its own. `make test` runs
# them short (12 s of kills, one partition cycle); this target runs them for DRILL_SECONDS of kills and
# DRILL_CYCLES partition cycles. CI (.ci/run): DRILL_SECONDS=45 DRILL_CYCLES=2, about 2 minutes. Full length:
# `make drills DRILL_SECONDS=900 DRILL_CYCLES=20`, about 20 minutes on 2 cores.
DRILL_SECONDS ?= 120
DRILL_CYCLES  ?= 4
.PHONY: drills
drills:
	SIGSUMD_DRILL_SECONDS=$(DRILL_SECONDS) SIGSUMD_DRILL_CYCLES=$(DRILL_CYCLES) \
	  $(GO) test -race -count=1 -timeout 90m -v -run '^TestDrill' ./integration
