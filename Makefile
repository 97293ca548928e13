# wavecat — one static Go binary per command; see README.md.
GO        ?= go
BIN       := bin
PY        ?= /usr/bin/python3
export CGO_ENABLED ?= 0

.PHONY: all build test test-reference bench demo lint deps-test fuzz clean default-model

all: build

build:
	$(GO) build -o $(BIN)/ ./cmd/...

# The tests the README and CI run. Optional tools (numpy, espeak-ng, sox,
# torch) make more of them run; each test that needs one skips with a message
# when it is absent. `make deps-test` installs them on Debian as root.
test:
	$(GO) test -count=1 ./...

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

# Retrains the small model embedded in vocode (cmd/vocode/model/default; see
# its README): an espeak-ng corpus, preprocessing, ~1 hour of CPU training.
default-model: build
	$(BIN)/train-wavenet make-corpus --out build/default-model/corpus --n 150 -q
	$(BIN)/train-wavenet preprocess --data build/default-model/corpus --out build/default-model/dump -q
	$(BIN)/train-wavenet --data build/default-model/dump --preset tiny --layers 12 --stacks 2 \
		--residual-channels 32 --gate-channels 64 --skip-channels 32 --max-time-steps 4096 --batch-size 4 \
		--ema-decay 0.999 --lr 3e-4 --clip-norm 1 --steps 6000 --checkpoint-interval 250 --keep 0 \
		--eval-interval 0 --threads 1 --out build/default-model/run -q
	$(GO) run ./cmd/vocode/model/mkdefault --run build/default-model/run --out cmd/vocode/model/default

clean:
	rm -rf $(BIN) demo-out
