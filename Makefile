# Flowscope: network flow logs as a Kubernetes API.
SHELL := /usr/bin/env bash
.DEFAULT_GOAL := help

OUT        ?= _output
BIN        := $(OUT)/bin
GO         ?= go
GOFLAGS    ?=
export GOFLAGS

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-18s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: build
build: ## Build flowscope-apiserver, flowscope-agent and the dev tools into _output/bin.
	$(GO) build -o $(BIN)/ ./cmd/...

.PHONY: tools
tools: ## Build (or reuse from cache) kube-apiserver, kubectl and etcd at pinned versions; Debian's chromium for the UI's browser tests.
	hack/build-tools.sh
	hack/build-helm.sh
	hack/install-prometheus.sh
	hack/install-chromium.sh

.PHONY: run
run: build tools ## Start the whole local system (root): etcd, kube-apiserver, flowscope-apiserver, two agents; certificates self-managed (SELF_MANAGED_CERTS=0: made with openssl, as the e2e suites have them).
	SELF_MANAGED_CERTS=$${SELF_MANAGED_CERTS:-1} hack/local-up.sh

.PHONY: stop
stop: ## Stop everything `make run` started and clean up.
	hack/local-down.sh

.PHONY: test
test: build tools ## Unit, integration and end-to-end tests.
	$(GO) test ./... -count=1 -timeout 40m
	GOWORK=off $(GO) -C hack/tools/images test ./... -count=1 -timeout 30m

.PHONY: test-unit
test-unit: ## Unit tests only (no local cluster), with the race detector; also the checkers' own tests.
	$(GO) test -race -short ./... -count=1 -timeout 30m
	GOWORK=off $(GO) -C hack/tools/checks test -race ./... -count=1

FUZZTIME ?= 10s
.PHONY: fuzz
fuzz: ## Run every fuzz target of the module for FUZZTIME (10s) each (hack/fuzz.sh).
	FUZZTIME=$(FUZZTIME) hack/fuzz.sh

.PHONY: test-fuzz
test-fuzz: fuzz ## Same as fuzz.

.PHONY: test-e2e
test-e2e: build tools ## End-to-end tests against a local system started by the suite.
	$(GO) test ./test/e2e/... -count=1 -v -timeout 30m

# make bench's output is benchstat's input: compare two files of it with
# $(BENCHSTAT) a.txt b.txt, or two commits side by side with
# hack/bench-compare.sh REF [PATTERN] [PKGS...].
BENCH       ?= .
BENCH_PKGS  ?= ./...
BENCH_COUNT ?= 1
.PHONY: bench
bench: ## Go benchmarks (BENCH regexp, BENCH_PKGS, BENCH_COUNT rounds) into _output/bench/<commit>.txt, benchstat's input; hack/bench-compare.sh REF compares a commit with HEAD.
	@mkdir -p $(OUT)/bench
	set -o pipefail; $(GO) test -run '^$$' -bench '$(BENCH)' -benchmem -count $(BENCH_COUNT) $(BENCH_PKGS) | tee $(OUT)/bench/$$(git describe --always --dirty).txt
	@echo "bench: wrote $(OUT)/bench/$$(git describe --always --dirty).txt (compare: $(BENCHSTAT) OLD.txt NEW.txt)"

.PHONY: benchstat
benchstat: ## Build benchstat (golang.org/x/perf, pinned in hack/tools/benchstat) into _output/tools.
	GOWORK=off GOFLAGS= $(GO) -C hack/tools/benchstat build -o $(abspath $(BENCHSTAT)) golang.org/x/perf/cmd/benchstat

.PHONY: bench-replay
bench-replay: build ## Hubble import end to end (hack/replayload): LINES (200000) diverse export lines appended at once to a real agent's replay file; lines/s until all are stored, agent CPU per line, bytes on disk per flow after a clean stop, ROUNDS (5); RATE=N appends N lines a second instead, as a node's Hubble writes them; AGENTS="old=PATH new=PATH" compares binaries in alternating rounds.
	$(GO) run ./hack/replayload -lines $${LINES:-200000} -rounds $${ROUNDS:-5} -rate $${RATE:-0} $$(for a in $${AGENTS:-agent=$(BIN)/flowscope-agent}; do printf -- '-agent %s ' "$$a"; done)

.PHONY: bench-capture
bench-capture: build ## (root) iperf3 and small-packet UDP between two netns, with vs. without the agent attached.
	hack/bench-capture.sh

.PHONY: bench-l7
bench-l7: build ## (root) L7 sampling's cost: iperf3 TCP, HTTP/1.1 keep-alive, gRPC unary (h2c), DNS over UDP and Kafka produce rate and p99 between two netns, --l7=off vs selected vs all side by side (ROUNDS 5, SECS 5, LOADS and L7_MODES choose, BASELINE=agent-binary adds it with --l7=all, PROFILE=dir for pprof of all); the tracker and parsers per exchange.
	hack/bench-l7.sh $${ROUNDS:-5} $${SECS:-5}

.PHONY: bench-fanout
bench-fanout: build tools ## List and watch latency, memory per watcher: AGENTS (50) agents, WATCHERS (200) watchers, RATE (2000) flows/s.
	hack/bench-fanout.sh

.PHONY: bench-store
bench-store: ## Store benchmarks: codec, list latency over FLOWS flows (planner vs full scan), ingest, bytes per flow.
	$(GO) test ./flowcodec -run '^$$' -bench 'Marshal|Unmarshal' -benchmem -benchtime 2s
	FLOWSCOPE_BENCH_FLOWS=$${FLOWS:-1000000} $(GO) test ./nodeagent/store -run '^$$' -bench 'List|Write' -benchtime 200x -timeout 60m
	$(GO) run ./hack/ingestload -duration 20s
	$(GO) run ./hack/storesize -n 1000000

.PHONY: bench-summary
bench-summary: ## FlowSummary: an agent's summary over a store of FLOWS (1000000) flows (whole store, 15m window, one namespace, 1m), and the server's merge of 50 agents' parts.
	FLOWSCOPE_BENCH_FLOWS=$${FLOWS:-1000000} $(GO) test ./nodeagent/summary -run '^$$' -bench Summarize -benchtime 10x -timeout 60m
	$(GO) test ./flowsummary -run '^$$' -bench Merge -benchtime 10x

# With 5 rounds, benchstat shows a spread only below 95% confidence: at 90%
# it is about the rounds' range.
BENCHSTAT ?= $(OUT)/tools/benchstat
.PHONY: bench-stored
bench-stored: ## Stored mode: ingest with 0 vs 20 flow log policies (File/Store split), tier vs store bytes per flow over FLOWS (200000) flows; 5 rounds each into _output/bench-stored-*.txt, then benchstat if installed.
	@mkdir -p $(OUT)
	set -o pipefail; $(GO) test ./nodeagent/stored -run '^$$' -bench IngestPolicies -benchtime 200000x -count 5 -timeout 60m | tee $(OUT)/bench-stored-ingest.txt
	set -o pipefail; FLOWSCOPE_BENCH_FLOWS=$${FLOWS:-200000} $(GO) test ./nodeagent/tiers -run '^$$' -bench TierBytesPerFlow -benchtime 1x -count 5 -timeout 60m | tee $(OUT)/bench-stored-tiers.txt
	@if [ -x "$(BENCHSTAT)" ]; then \
		"$(BENCHSTAT)" -confidence 0.9 -col /policies $(OUT)/bench-stored-ingest.txt; \
		"$(BENCHSTAT)" -confidence 0.9 -col /store $(OUT)/bench-stored-tiers.txt; \
	else echo "$(BENCHSTAT) not found: make benchstat for medians, spreads and ratios"; fi

.PHONY: bench-flowmetrics
bench-flowmetrics: ## Flow metrics: ingest CPU per flow with them off vs on (and the Hubble set), their own cost per flow, series and heap at 10,000 and 20,000 distinct endpoints, a scrape of 10,000 series; 5 rounds into _output/bench-flowmetrics.txt, then benchstat if installed.
	@mkdir -p $(OUT)
	set -o pipefail; ( $(GO) test ./nodeagent/flowmetrics -run '^$$' -bench 'IngestFlowMetrics|Observe$$' -benchtime 200000x -count 5 -timeout 60m && \
		$(GO) test ./nodeagent/flowmetrics -run '^$$' -bench 'FlowMetricsSeries|Collect' -benchtime 1x -count 5 ) | tee $(OUT)/bench-flowmetrics.txt
	@if [ -x "$(BENCHSTAT)" ]; then "$(BENCHSTAT)" -confidence 0.9 -col /metrics -filter .name:IngestFlowMetrics $(OUT)/bench-flowmetrics.txt; \
	else echo "$(BENCHSTAT) not found: make benchstat for medians, spreads and ratios"; fi

.PHONY: generate-bpf
generate-bpf: ## Regenerate bpf/*_bpfel.{go,o} with clang-19 (installed from Debian if missing).
	hack/generate-bpf.sh

.PHONY: verify-bpf
verify-bpf: generate-bpf ## Fail if the committed eBPF objects differ from the sources.
	git diff --exit-code -- bpf/

.PHONY: update-codegen
update-codegen: ## Regenerate deepcopy, OpenAPI, clientset, listers, informers, and the CRDs in artifacts/crds (controller-gen).
	hack/update-codegen.sh

.PHONY: verify-codegen
verify-codegen: ## Fail if generated code or the CRDs are stale.
	hack/verify-codegen.sh

.PHONY: update-dashboards
update-dashboards: ## Regenerate the Grafana dashboards and their ConfigMaps in artifacts/dashboards (hack/tools/dashboards).
	GOWORK=off $(GO) -C hack/tools/dashboards run . -out $(CURDIR)/artifacts/dashboards

.PHONY: verify-dashboards
verify-dashboards: ## Fail if artifacts/dashboards is stale or a panel's PromQL does not parse (promtool check rules).
	GOWORK=off $(GO) -C hack/tools/dashboards run . -out $(CURDIR)/artifacts/dashboards -verify
	hack/install-prometheus.sh
	GOWORK=off $(GO) -C hack/tools/dashboards test ./... -count=1

VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
.PHONY: images
images: ## Container images of every binary (static, on a base built here, no daemon, no pull) as OCI layouts and tarballs in _output/images; VERSION tags them, SOURCE_DATE_EPOCH (0) dates them.
	GOWORK=off GOFLAGS= $(GO) -C hack/tools/images build -o $(CURDIR)/$(OUT)/images-tool .
	$(OUT)/images-tool --root . --out $(OUT)/images --version $(VERSION)

.PHONY: update-chart
update-chart: ## Regenerate the chart's crds/ and the chart-made files of artifacts/deploy (hack/update-chart.sh).
	hack/update-chart.sh

.PHONY: verify-chart
verify-chart: ## helm lint and helm template the chart (Helm pinned in hack/tools/helm); fail if crds/ or artifacts/deploy disagree with it.
	hack/verify-chart.sh

# The Go modules of the repository: the root one and the tools' own.
TOOL_MODULES := hack/tools hack/tools/lint hack/tools/checks hack/tools/crdgen hack/tools/dashboards hack/tools/otelcol hack/tools/images hack/tools/helm hack/tools/benchstat

.PHONY: verify
verify: verify-gofmt verify-vet verify-mod verify-layers verify-boilerplate verify-shellcheck lint verify-codegen verify-bpf verify-ui verify-dashboards verify-chart ## Every check: gofmt, vet, go mod tidy, layers, license headers, shellcheck, lint, generated code, web UI assets.

.PHONY: update-ui
update-ui: ## Rebuild the web UI (web/ui: npm ci, esbuild) into cmd/kubectl-flows/internal/ui/dist.
	hack/update-ui.sh

.PHONY: verify-ui
verify-ui: ## Fail if the committed web UI assets differ from a fresh build of web/ui.
	hack/verify-ui.sh

.PHONY: verify-gofmt
verify-gofmt: ## Fail if a Go file is not gofmt'ed.
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1; }

.PHONY: verify-vet
verify-vet: ## go vet the module and the repository's checkers (hack/tools/checks).
	$(GO) vet ./...
	GOWORK=off $(GO) -C hack/tools/checks vet ./...

.PHONY: verify-mod
verify-mod: ## Fail if go.mod or go.sum of any module is not tidy.
	$(GO) mod tidy -diff
	@set -e; for m in $(TOOL_MODULES); do echo "$(GO) -C $$m mod tidy -diff"; GOWORK=off $(GO) -C $$m mod tidy -diff; done

.PHONY: verify-layers
verify-layers: ## Fail if an import crosses a layer (rules: hack/layers.txt).
	hack/verify-layers.sh

.PHONY: lint
lint: ## golangci-lint (.golangci.yml) and logcheck; every finding fails.
	hack/verify-lint.sh

.PHONY: update-boilerplate
update-boilerplate: ## Add the license header (hack/boilerplate.{go,sh}.txt) to hand-written .go and .sh files that lack it.
	hack/update-boilerplate.sh

.PHONY: verify-boilerplate
verify-boilerplate: ## Fail if LICENSE is not Apache-2.0 or a hand-written .go or .sh file lacks the license header.
	@grep -q 'Apache License' LICENSE && grep -q 'Version 2.0, January 2004' LICENSE || { echo "LICENSE is not the Apache-2.0 text"; exit 1; }
	hack/verify-boilerplate.sh

.PHONY: verify-shellcheck
verify-shellcheck: ## shellcheck hack/**/*.sh and .ci/run (installs shellcheck from Debian if missing).
	hack/verify-shellcheck.sh

.PHONY: clean
clean: stop ## Remove build output (keeps the tools cache in ~/.cache/flowscope).
	rm -rf $(OUT)
