# redwire — the two commands a newcomer needs are `make demo` and `make test`.
GO       ?= go
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
REVISION ?= $(shell git rev-parse HEAD 2>/dev/null)
# staticcheck 2026.2.2; `go run pkg@version` fetches it through the module proxy.
STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2
LDFLAGS  := -s -w \
	-X github.com/prometheus/common/version.Version=$(VERSION) \
	-X github.com/prometheus/common/version.Revision=$(REVISION) \
	-X github.com/prometheus/common/version.Branch=main

# binary=Debian package, for scripts/install-deps.sh
TEST_DEPS := redis-server=redis-server redis-cli=redis-tools prometheus=prometheus \
	victoria-metrics=victoria-metrics prometheus-redis-exporter=prometheus-redis-exporter \
	redis-sentinel=redis-sentinel etcd=etcd-server systemd-analyze=systemd \
	unshare=util-linux setpriv=util-linux mount=mount umount=mount curl=curl chromium=chromium
DEMO_DEPS := redis-server=redis-server redis-cli=redis-tools prometheus=prometheus curl=curl

.PHONY: all build release test deps demo bench soak fuzz clean

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/redwire ./cmd/redwire

# Static binaries and a .deb per edge architecture (amd64, arm64, armv7 =
# armhf), built with build's flags, and SHA256SUMS, into DIST. nfpm comes
# through the module proxy (scripts/release.sh). RELEASE_ARCHES=amd64 for one.
DIST ?= dist
RELEASE_ARCHES ?= amd64 arm64 armv7
release:
	GO='$(GO)' VERSION='$(VERSION)' LDFLAGS='$(LDFLAGS)' DIST='$(DIST)' RELEASE_ARCHES='$(RELEASE_ARCHES)' scripts/release.sh

# Debian packages, then the receivers Debian lacks (Prometheus 3.x, Thanos),
# built once into ${REDWIRE_CACHE:-~/.cache/redwire}/bin: tens of minutes
# on a fresh 2-core machine (see the script), nothing after.
deps:
	@scripts/install-deps.sh $(TEST_DEPS)
	@scripts/build-receivers.sh

# go vet and staticcheck, then every test (unit and real-server) with the
# race detector.
test: deps
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...
	$(GO) test -race -count=1 -timeout 25m ./...

# The story in about a minute (scripts/demo.sh): a loaded Redis, a real
# Prometheus receiver, redwire between them scraping every second. The
# receiver is stopped for 20 s and brought back; then the receiver itself
# shows that every scrape arrived: a timeline, demo-timeline.png and
# "N taken, N delivered, 0 lost". Exits 0 only if nothing was lost.
# DEMO_KEEP=1 leaves everything running until Ctrl-C.
demo: build
	@scripts/install-deps.sh $(DEMO_DEPS)
	@scripts/demo.sh bin/redwire

# The drain benchmark's receiver gets the last CPU to itself, as on its own
# host, and the benchmark the others (on one CPU: shared only).
LAST_CPU := $(shell expr $$(nproc) - 1)

# Go benchmarks (6 runs each: compare medians with benchstat), then the
# end-to-end runs against real Redis, a real Prometheus receiver and the
# redis_exporter + vmagent pair, then the table of issue 7's four figures.
bench: deps
	$(GO) test -run '^$$' -bench . -benchmem -count 6 ./sources/... ./buffer/... ./internal/codec/ ./remotewrite/... | tee bench.out
	$(GO) test -run '^$$' -bench 'ScrapeEncode' -benchmem -count 6 ./agent | tee -a bench.out
	$(GO) test -run '^$$' -bench 'ReplayDrain' -benchtime 1x -count 6 ./agent | tee -a bench.out
	$(GO) test -run '^$$' -bench 'DrainVsFirehose' -benchtime 1x -count 3 ./agent | tee -a bench.out
	for o in live_first fifo; do REDWIRE_REPLAY_ORDER=$$o REDWIRE_REPLAY_RATE=50000 $(GO) test -run '^$$' -bench 'LiveFirstFreshAfterBacklog' -benchtime 1x -count 3 -timeout 40m ./agent | tee -a bench.out; done
	if [ $(LAST_CPU) -gt 0 ]; then REDWIRE_RECEIVER_CPUS=$(LAST_CPU) taskset -c 0-$$(($(LAST_CPU)-1)) \
		$(GO) test -run '^$$' -bench 'DrainVsFirehose' -benchtime 1x -count 3 ./agent | tee -a bench.out; fi
	$(GO) test -run '^$$' -bench 'PeerSteadyState' -benchtime 1x -count 3 -timeout 30m ./agent | tee -a bench.out
	REDWIRE_PEER_EXPORTER=multi $(GO) test -run '^$$' -bench 'PeerSteadyState' -benchtime 1x -count 3 -timeout 30m ./agent | tee -a bench.out
	$(GO) test -run '^$$' -bench 'ScaleCurve' -benchtime 1x -count 3 -timeout 90m ./agent | tee -a bench.out
	REDWIRE_OUTAGE_STEP=10m $(GO) test -run '^$$' -bench 'OutageDisk' -benchtime 1x -count 3 -timeout 60m ./agent | tee -a bench.out
	$(GO) test -run '^$$' -bench 'FleetReconnect' -benchtime 1x -count 3 -timeout 60m ./agent | tee -a bench.out
	$(GO) test -run '^$$' -bench 'TargetScrapeCPU' -benchtime 1x -count 6 -timeout 90m ./agent | tee -a bench.out
	$(MAKE) build && scripts/diskwrites.sh bin/redwire 60 | tee -a bench.out
	$(GO) run ./scripts/benchtable bench.out

# The 30-minute chaos soak (receiver outages, 500/429/timeouts, Redis
# restarts, agent SIGKILLs, a Sentinel failover), then the accounting
# check. SOAK=5m for a shorter run; REDWIRE_SOAK_SEED=<n> replays a schedule.
# SOAK_MODE=always soaks buffer.mode: always instead of the default (spill,
# with the crash journal).
SOAK ?= 30m
SOAK_MODE ?= spill
soak: deps
	REDWIRE_SOAK=$(SOAK) REDWIRE_SOAK_MODE=$(SOAK_MODE) $(GO) test -race -count=1 -run '^TestSoak$$' -timeout 2h -v ./agent

# Short fuzz runs of every fuzz target (FUZZTIME each); the corpus lives
# in each package's testdata/fuzz and runs as plain tests in make test.
FUZZTIME ?= 60s
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzConfigLoad$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 10s ./agent/
	$(GO) test -run '^$$' -fuzz '^FuzzReload$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 10s ./agent/
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeBatch$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 10s ./internal/codec/
	$(GO) test -run '^$$' -fuzz '^FuzzCompactDecode$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 10s ./internal/codec/
	$(GO) test -run '^$$' -fuzz '^FuzzCompactRoundTrip$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 10s ./internal/codec/
	$(GO) test -run '^$$' -fuzz '^FuzzDecimalChunk$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 10s ./internal/codec/
	$(GO) test -run '^$$' -fuzz '^FuzzEncode$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 10s ./remotewrite/
	$(GO) test -run '^$$' -fuzz '^FuzzReadExport$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 10s ./offline/
	$(GO) test -run '^$$' -fuzz '^FuzzClusterTargets$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 10s ./sources/discovery/
	$(GO) test -run '^$$' -fuzz '^FuzzSentinelDiscovery$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 10s ./sources/discovery/
	$(GO) test -run '^$$' -fuzz '^FuzzParseClusterNodes$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 10s ./sources/redis/
	$(GO) test -run '^$$' -fuzz '^FuzzReplyGuard$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 10s ./sources/redis/
	$(GO) test -run '^$$' -fuzz '^FuzzParseInfo$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 10s ./sources/redis/
	$(GO) test -run '^$$' -fuzz '^FuzzSentinelReplies$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 10s ./sources/redis/

clean:
	rm -rf bin dist bench.out demo-timeline.png
