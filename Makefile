# lmtpd — see README.md. Every target works on a fresh Debian machine with Go.
GO       ?= go
BIN      ?= bin/lmtpd
PKGS     ?= ./...
FUZZTIME ?= 30s
# A release tag (v1.2.3) when HEAD has one in its history, else empty (lmtpd
# then reports the module version or "devel"); the commit is always set.
VERSION  ?= $(shell git describe --tags --match 'v[0-9]*' --dirty 2>/dev/null)
COMMIT   ?= $(shell git describe --always --dirty --abbrev=12 --exclude '*' 2>/dev/null)
LDFLAGS  := -X main.version=$(VERSION) -X main.commit=$(COMMIT)

.PHONY: all build run test unit e2e-deps bench bench-inproc bench-e2e fuzz lint vet fmt clean man package

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

# Benchmarks, written into README.md: the in-process ones (protocol core vs
# go-smtp, maildir vs a bare baseline, ...), then the end-to-end ones over
# loopback (lmtpd vs a go-smtp server, Dovecot LMTP and Postfix's smtp-sink;
# about 9 minutes on 2 CPUs; root for Dovecot and a fresh ext4 file system).
# E2E=0 skips the end-to-end part.
bench:
	@bash scripts/bench.sh
	@if [ "$${E2E:-1}" = 1 ]; then bash scripts/bench-e2e.sh -readme README.md; fi

bench-inproc:
	@bash scripts/bench.sh

bench-e2e:
	@bash scripts/bench-e2e.sh -readme README.md

# Runs every fuzz target for FUZZTIME each.
fuzz:
	@bash scripts/fuzz.sh $(FUZZTIME)

lint: vet staticcheck cross
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

# staticcheck at a pinned release, fetched through the module proxy by
# go run (nothing to install). 2026.2.2 (v0.8.2) is built for and
# understands Go 1.26, the version in go.mod; raise it with Go.
STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2
.PHONY: staticcheck
staticcheck:
	$(GO) run $(STATICCHECK) $(PKGS)

vet:
	$(GO) vet $(PKGS)

# The daemon builds for FreeBSD, OpenBSD, NetBSD and macOS too (Linux-only
# parts, openat2, syncfs, the ordered flush, have fallbacks there; statfs
# and the monotonic clock are per system): a build breaks this, not a user.
# Its tests vet there too (tests/ is Linux's alone: its peers are Debian's).
.PHONY: cross
cross:
	for os in freebsd openbsd netbsd darwin; do \
		GOOS=$$os $(GO) build -o /dev/null ./cmd/lmtpd && GOOS=$$os $(GO) vet ./... || exit 1; \
	done

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf bin coverage

# The manual pages contrib/man/lmtpd.8 and lmtpd.toml.5 (from the commands'
# usage texts and config.example.toml) and the bash and zsh completion
# scripts in contrib/completion/, regenerated; "make test" fails while the
# committed ones differ from what the sources give.
man:
	$(GO) test -count=1 -run 'TestManPages|TestCompletionFiles' ./cmd/lmtpd -args -update

# dist/lmtpd_*.deb and dist/lmtpd-*.rpm: the binary, the systemd units,
# sysusers.d and tmpfiles.d files, manual pages, bash and zsh completion and
# the example configuration, packed by nfpm (run with "go run" at a pinned
# version: it stays out of go.mod).
package:
	@GO=$(GO) VERSION=$(VERSION) COMMIT=$(COMMIT) bash scripts/package.sh -o dist

# The power-cut test at length: ROUNDS (default 10) rounds of MESSAGES
# (default 2000) deliveries into ext4 and XFS on a loop device whose writes
# are cut at a random moment (tests/powercut_test.go; root and loop devices).
.PHONY: crash
crash:
	LMTPD_POWERCUT_ROUNDS=$${ROUNDS:-10} LMTPD_POWERCUT_MESSAGES=$${MESSAGES:-2000} \
		$(GO) test -count=1 -timeout 60m -v -run 'TestPowerCut' ./tests/
