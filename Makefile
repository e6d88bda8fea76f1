# tokengate: the table of contents. Every target is a line of the README.
GO        ?= go
WASM      := build/tokengate.wasm
# Appended to the user's own GOFLAGS (environment or make's command line, say
# -modcacherw), never in their place.
override GOFLAGS := $(strip $(GOFLAGS) -buildvcs=false)
export GOFLAGS

# wazero compiles the 4 MB module in about 2 s; every process that loads it (test binaries,
# the workers of a fuzz run, make run's gateway, the e2e harness) reads it back from here.
export TOKENGATE_COMPILE_CACHE ?= $(CURDIR)/build/wazero-cache

.PHONY: all wasm image test check bench bench-global fuzz e2e run run-global clean ratelimit

all: wasm

## wasm: build the filter (standard Go toolchain, wasip1 reactor)
wasm: $(WASM)
$(WASM): go.mod go.sum $(shell find filter internal/proxywasm internal/bucket internal/config internal/limiter -name '*.go' -not -name '*_test.go' 2>/dev/null)
	@mkdir -p build
	GOOS=wasip1 GOARCH=wasm $(GO) build -buildmode=c-shared -trimpath -o $@ ./filter

## image: the module as a Wasm OCI image (compat variant): an OCI image layout in build/image, and its tar in build/tokengate-image.tar
IMAGE_TAG ?= latest
image: wasm
	$(GO) run ./envoy/cmd/tokengate image build -wasm $(WASM) -o build/image -tag $(IMAGE_TAG) -archive build/tokengate-image.tar

## test: every test, the compiled .wasm included; the concurrent test tools and the limiter again under the race detector; then every fuzz target briefly
RACE_PKGS := ./internal/wasmhost ./internal/envoysim/... ./internal/limiter ./e2e/harness
test: wasm
	TOKENGATE_WASM=$(CURDIR)/$(WASM) $(GO) test -count=1 ./...
	$(GO) test -race -count=1 $(RACE_PKGS)
	$(MAKE) --no-print-directory fuzz FUZZTIME=$(TEST_FUZZTIME)

TEST_FUZZTIME ?= 10000x
FUZZTIME      ?= 30s

## fuzz: run each fuzz target for FUZZTIME (seeds also run as plain tests); a target that never got past its baseline coverage (so fuzzed nothing) fails
# FUZZTIME counts from the start, baseline coverage included, and Go reports a deadline met
# there as "context deadline exceeded" on some runs and as PASS on others: so each target's
# output must show that fuzzing began. A count (10000x) has no deadline.
fuzz: wasm
	@set -e; mkdir -p build; log=build/fuzz.log; \
	for dir in $$(grep -rl --include='*_test.go' '^func Fuzz' . | xargs -n1 dirname | sort -u); do \
	  for f in $$(grep -ho '^func Fuzz[A-Za-z0-9_]*' $$dir/*_test.go | cut -d' ' -f2); do \
	    echo "fuzz $$dir $$f for $(FUZZTIME)"; \
	    { TOKENGATE_WASM=$(CURDIR)/$(WASM) $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$dir; echo "exit $$?"; } 2>&1 | tee $$log; \
	    tail -n 1 $$log | grep -qx 'exit 0' || exit 1; \
	    grep -q 'now fuzzing' $$log || { echo "$$f fuzzed nothing: its baseline coverage did not finish within $(FUZZTIME); raise FUZZTIME"; exit 1; }; \
	  done; done

## check: formatting, vet, tidy (fails on a dirty diff); the Makefile keeps a user's GOFLAGS
check:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo 'gofmt: files above need formatting'; exit 1; }
	$(GO) vet ./...
	$(GO) vet -tags e2e ./e2e/...
	GOOS=wasip1 GOARCH=wasm $(GO) vet ./filter ./internal/proxywasm
	$(GO) mod tidy
	@git diff --exit-code -- go.mod go.sum || { echo 'go mod tidy changed go.mod/go.sum'; exit 1; }
	@MAKEFLAGS= GOFLAGS=-modcacherw $(MAKE) --no-print-directory -p -n wasm 2>/dev/null | grep -qx 'GOFLAGS := -modcacherw -buildvcs=false' \
	  || { echo 'Makefile: a GOFLAGS from the environment is not kept'; exit 1; }

## run: the example gateway (envoy/examples/gateway.yaml) and three sample backends, until Ctrl-C; HOST, PORT, ADMIN_PORT, BACKEND_PORT move it
# 0 or empty: the spec's (listener 127.0.0.1:10000, admin 9901, backends 8081-8083: BACKEND_PORT is b1's, the others follow).
HOST ?=
PORT ?= 0
ADMIN_PORT ?= 0
BACKEND_PORT ?= 0
run: wasm
	@mkdir -p build/gateway/bin
	$(GO) build -o build/gateway/bin/gateway ./e2e/cmd/gateway
	build/gateway/bin/gateway -spec envoy/examples/gateway.yaml -host '$(HOST)' -port $(PORT) -admin-port $(ADMIN_PORT) -backend-port $(BACKEND_PORT) -out build/gateway

## run-global: the two-tier example (envoy/examples/global.yaml): Redis, envoyproxy/ratelimit and two replicas on ports $(PORT) and $(PORT)+1; needs redis-server
# HAVE_REDIS: a shell test that a redis-server can be started, as the harness finds one
# (REDIS_SERVER_BIN, else redis-server on PATH or in /usr/bin).
HAVE_REDIS = { test -x "$(REDIS_SERVER_BIN)" || command -v redis-server >/dev/null || test -x /usr/bin/redis-server; }
run-global: wasm
	@$(HAVE_REDIS) || \
	  { echo 'make run-global needs Redis: install it with apt-get install redis-server (or set REDIS_SERVER_BIN); make run needs nothing but Go'; exit 1; }
	@$(MAKE) --no-print-directory $(RATELIMIT)
	@mkdir -p build/fleet/bin
	$(GO) build -o build/fleet/bin/fleet ./e2e/cmd/fleet
	RATELIMIT_BIN=$(CURDIR)/$(RATELIMIT) build/fleet/bin/fleet -spec envoy/examples/global.yaml -port $(PORT) -out build/fleet

## ratelimit: build envoyproxy/ratelimit (the reference rate limit service, pinned in e2e/ratelimit/go.mod) into build/bin/ratelimit
RATELIMIT := build/bin/ratelimit
ratelimit: $(RATELIMIT)
$(RATELIMIT): e2e/ratelimit/go.mod e2e/ratelimit/go.sum
	@mkdir -p $(dir $@)
	cd e2e/ratelimit && $(GO) build -trimpath -o $(CURDIR)/$@ github.com/envoyproxy/ratelimit/src/service_cmd

## e2e: end-to-end scenarios on Envoy if installed (ENVOY_BIN or PATH), else envoysim; E2E_DATAPLANE=envoy|sim forces one
e2e: wasm $(RATELIMIT)
	TOKENGATE_WASM=$(CURDIR)/$(WASM) RATELIMIT_BIN=$(CURDIR)/$(RATELIMIT) $(GO) test -tags e2e -count=1 -timeout 15m -v ./e2e/

## bench: benchmarks with their baselines in the same runs, BENCHCOUNT times; prints the table (BENCHMARKS.md)
BENCHTIME  ?= 1s
BENCHCOUNT ?= 5
bench: wasm
	TOKENGATE_WASM=$(CURDIR)/$(WASM) $(GO) test -run '^$$' -bench . -benchtime $(BENCHTIME) -count $(BENCHCOUNT) ./filter ./internal/bucket > build/bench.txt || { cat build/bench.txt; exit 1; }
	@cat build/bench.txt
	@$(GO) run ./internal/benchtable < build/bench.txt > build/bench-table.md || { cat build/bench-table.md; exit 1; }
	@cat build/bench-table.md
	@$(MAKE) --no-print-directory bench-global

## bench-global: a global rule with a warm envoyproxy/ratelimit + Redis on localhost (p50/p99, requests/s) beside a local rule and no rule; needs redis-server
bench-global: wasm
	@if $(HAVE_REDIS); then \
	  $(MAKE) --no-print-directory $(RATELIMIT) && \
	  TOKENGATE_WASM=$(CURDIR)/$(WASM) RATELIMIT_BIN=$(CURDIR)/$(RATELIMIT) $(GO) run ./e2e/cmd/benchglobal -out build/benchglobal > build/bench-global.md && \
	  cat build/bench-global.md; \
	else echo 'global rule: NOT measured: redis-server is not installed (apt-get install redis-server)'; fi

clean:
	rm -rf build
