# lmtpd — see README.md. Every target works on a fresh Debian machine with Go.
GO       ?= go
BIN      ?= bin/lmtpd
PKGS     ?= ./...
FUZZTIME ?= 30s
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -X main.version=$(VERSION)

.PHONY: all build run test unit e2e-deps bench fuzz lint vet fmt clean

all: build

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/lmtpd

# Runs lmtpd on its embedded default configuration: LMTP on ./run/lmtp.sock,
# SMTP on 127.0.0.1:2525, maildirs under ./mail.
run: build
	./$(BIN)

# The whole test suite: static checks, unit and wire tests with the race
# detector, fuzz seed corpora, and the end-to-end tests in tests/ with real
# peers (installed by tests/install-deps.sh when run as root).
test: lint e2e-deps
	$(GO) test -race -count=1 -timeout 25m $(PKGS)

unit:
	$(GO) test -short -count=1 $(PKGS)

e2e-deps:
	@bash tests/install-deps.sh

bench:
	@bash scripts/bench.sh

# Runs every fuzz target for FUZZTIME each.
fuzz:
	@bash scripts/fuzz.sh $(FUZZTIME)

lint: vet
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet $(PKGS)

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf bin coverage
