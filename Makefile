# ferry — see README.md. Every target builds with the pinned local toolchain.
export GOTOOLCHAIN := local

GO      ?= go
BIN     ?= bin/ferry
# ferry version prints it (and the Temporal versions from the build info).
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
PKGS    ?= ./...
# The suite must fit CI (2 cores, 90 min); individual tests bound themselves.
TESTFLAGS ?= -count=1 -timeout 30m

.PHONY: all build test lint bench bench-btrfs bench-zfs fuzz demo ui-screenshots clean

all: lint test

build:
	$(GO) build -ldflags "-X main.version=$(VERSION)" -o $(BIN) ./cmd/ferry

# The main job on the embedded default: server, two workers, sample data,
# a full and an incremental replication. No root, nothing installed.
demo:
	@echo "make demo: building bin/ferry first; the first build downloads and compiles the Temporal server and UI (several minutes on a small machine), later ones take seconds"
	@$(MAKE) --no-print-directory build
	./$(BIN) demo

test:
	$(GO) test $(TESTFLAGS) $(PKGS)

lint:
	$(GO) vet $(PKGS)
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	@# Reports without writing: the tree stays as it was.
	@$(GO) mod tidy -diff >/dev/null || { echo "go mod tidy would change go.mod/go.sum (diff below): run it and commit the result"; $(GO) mod tidy -diff; exit 1; }

# docs/BENCHMARKS.md, generated (never edit it by hand): every row
# benchmark (BenchmarkRow*, -benchtime 1x, each measuring ferry and its
# ceilings side by side at least 3 times) appends its figures to
# $(BENCH_OUT); the hot-path benchmarks (BenchmarkHot*) print theirs; then
# benchdoc writes the report. -p 1 keeps packages from measuring at once.
# Rows that need root (loop devices, btrfs, zfs) are recorded as skipped,
# with the reason, when not run as root.
BENCH_OUT ?= $(CURDIR)/bin/bench-rows.jsonl
BENCH_GO  ?= $(CURDIR)/bin/bench-hot.txt
HOT_PKGS  ?= ./transfer/ ./storage/btrfs/ ./storage/dir/
ROW_PKGS  ?= ./transfer/ ./starter/ ./demo/ ./e2e/
bench:
	@mkdir -p bin && rm -f $(BENCH_OUT) $(BENCH_GO) && date +%s > bin/bench-started
	$(GO) test -p 1 $(HOT_PKGS) -run '^$$' -bench '^BenchmarkHot' -benchtime 1s -count 1 > $(BENCH_GO) || { cat $(BENCH_GO); exit 1; }
	@cat $(BENCH_GO)
	FERRY_BENCH_OUT=$(BENCH_OUT) $(GO) test -p 1 $(ROW_PKGS) -run '^$$' -bench '^BenchmarkRow' -benchtime 1x -count 1 -timeout 40m
	$(GO) run ./internal/benchrec/cmd/benchdoc -rows $(BENCH_OUT) -gobench $(BENCH_GO) -started $$(cat bin/bench-started) -out docs/BENCHMARKS.md
	@echo "make bench: wrote docs/BENCHMARKS.md"

# Only the btrfs (or zfs) rows of make bench, into a scratch report
# (bin/bench-btrfs.md, bin/bench-zfs.md; docs/BENCHMARKS.md is untouched):
# root only (loop devices; zfs: zfs-fuse or OpenZFS running).
bench-btrfs bench-zfs: bench-%:
	@mkdir -p bin && rm -f bin/bench-$*.jsonl
	FERRY_BENCH_OUT=$(CURDIR)/bin/bench-$*.jsonl $(GO) test ./e2e/ -run '^$$' -bench '^BenchmarkRow$(if $(filter btrfs,$*),Btrfs,ZFS)$$' -benchtime 1x -count 1 -timeout 30m -v
	$(GO) run ./internal/benchrec/cmd/benchdoc -rows bin/bench-$*.jsonl -out bin/bench-$*.md -command "make bench-$*"
	@echo "make bench-$*: wrote bin/bench-$*.md"

# Coverage-guided fuzzing of the frame decoder (the seed corpus runs in `make test`).
FUZZTIME ?= 60s
fuzz:
	$(GO) test ./transfer/ -run '^$$' -fuzz FuzzFrameDecoder -fuzztime $(FUZZTIME)

# The web UI screenshots of docs/ui.md, from a real `ferry demo --keep`
# (not part of `make test`): needs Debian's chromium and npm; see
# docs/img/shoot.sh.
ui-screenshots:
	sh docs/img/shoot.sh

clean:
	rm -rf bin
