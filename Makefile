# wavecat — one static Go binary per command; see README.md.
GO        ?= go
BIN       := bin
PY        ?= /usr/bin/python3
export CGO_ENABLED ?= 0

.PHONY: all build test test-reference bench demo lint deps-test fuzz clean default-model compare-heads

all: build

# The commit goes into --version even where GOFLAGS turns off Go's own
# version-control stamping.
COMMIT := $(shell git rev-parse --short=12 HEAD 2>/dev/null)$(shell git diff --quiet HEAD 2>/dev/null || echo '-modified')

build:
	$(GO) build -ldflags "-X github.com/wavecat/wavecat/internal/cliutil.commit=$(COMMIT)" -o $(BIN)/ ./cmd/...

# The tests the README and CI run. Optional tools (numpy, espeak-ng, sox,
# torch) make more of them run; each test that needs one skips with a message
# when it is absent, and scripts/test.sh lists those messages at the end.
# `make deps-test` installs them on Debian as root.
test:
	GO=$(GO) bash scripts/test.sh

# Installs the optional test tools when we are root on Debian/Ubuntu and they
# are missing; prints what it would do otherwise.
deps-test:
	@bash scripts/install-test-deps.sh

# PyTorch cross-checks: install Debian's python3-torch (1.13, CPU) and run them.
test-reference:
	@bash scripts/install-test-deps.sh torch
	$(GO) test -count=1 -run 'PyTorch|Reference' -v ./... 2>&1 | grep -E '^(=== RUN|--- |PASS|FAIL|ok|SKIP)|pytorch|reference' || true
	$(GO) test -count=1 -run 'PyTorch|Reference' ./...

bench:
	$(GO) test -run '^$$' -bench . -benchtime 2x ./...

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

fuzz:
	@bash scripts/fuzz.sh 20s

demo: build
	@bash scripts/demo.sh

# Trains vocode's built-in model and embeds it (scripts/train-default.sh:
# corpus, held-out set, training resumed from the committed state, eval with
# the speech gates, mkdefault). DEVICE=cuda on a GPU (9 minutes), else CPU
# for TIME_LIMIT (default 60m) at a time.
DEVICE ?= cpu
default-model: build
	EMBED=1 bash scripts/train-default.sh $(DEVICE)

# One model per output head at the built-in model's shape and recipe, the
# same corpus, steps and seed, then one vocode eval over all of them on the
# held-out set (scripts/compare-heads.sh; STEPS per head, default 20000).
compare-heads: build
	bash scripts/compare-heads.sh $(DEVICE)

clean:
	rm -rf $(BIN) demo-out
