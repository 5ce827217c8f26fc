#!/usr/bin/env bash
# Builds the lmtpd .deb and .rpm into OUT (default dist/) with nfpm, run
# through "go run" at a pinned version so that it never enters go.mod.
#   scripts/package.sh [-o OUT] [-p "deb rpm"]
# Environment: GO (default go), NFPM_VERSION, VERSION and COMMIT (as the
# Makefile computes them; -ldflags of the binary), PKG_VERSION (default:
# VERSION without its "v", or 0.0.0~git<commit>).
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
NFPM_VERSION=${NFPM_VERSION:-v2.48.0}
out=dist
formats="deb rpm"
while getopts o:p: opt; do
	case $opt in
	o) out=$OPTARG ;;
	p) formats=$OPTARG ;;
	*) echo "usage: $0 [-o OUT] [-p FORMATS]" >&2; exit 64 ;;
	esac
done
VERSION=${VERSION-$(git describe --tags --match 'v[0-9]*' --dirty 2>/dev/null || true)}
COMMIT=${COMMIT-$(git describe --always --dirty --abbrev=12 --exclude '*' 2>/dev/null || true)}
if [ -z "${PKG_VERSION:-}" ]; then
	if [ -n "$VERSION" ]; then PKG_VERSION=${VERSION#v}; else PKG_VERSION=0.0.0~git${COMMIT:-unknown}; fi
fi
# Debian and RPM versions: no "-" (it separates the release).
PKG_VERSION=${PKG_VERSION//-/+}
mkdir -p "$out"
stage=$(mktemp -d "${TMPDIR:-/tmp}/lmtpd-package.XXXXXX")
trap 'rm -rf "$stage"' EXIT
"$GO" build -trimpath -ldflags "-X main.version=$VERSION -X main.commit=$COMMIT" -o "$stage/lmtpd" ./cmd/lmtpd
# The unit names the binary where a manual install puts it; the package
# puts it in /usr/bin.
sed 's|/usr/local/bin/lmtpd|/usr/bin/lmtpd|g' contrib/systemd/lmtpd.service >"$stage/lmtpd.service"
gzip -9nc contrib/man/lmtpd.8 >"$stage/lmtpd.8.gz"
gzip -9nc contrib/man/lmtpd.toml.5 >"$stage/lmtpd.toml.5.gz"
cp contrib/systemd/lmtpd.socket contrib/systemd/lmtpd.sysusers.conf contrib/systemd/lmtpd.tmpfiles.conf \
	contrib/completion/lmtpd.bash contrib/completion/_lmtpd contrib/package/*.sh \
	config.example.toml README.md LICENSE "$stage/"
export PKG_VERSION PKG_ARCH=$("$GO" env GOARCH)
out=$(cd "$out" && pwd)
nfpm=("$GO" run "github.com/goreleaser/nfpm/v2/cmd/nfpm@$NFPM_VERSION")
for f in $formats; do
	(cd "$stage" && "${nfpm[@]}" package -f "$OLDPWD/contrib/nfpm.yaml" -p "$f" -t "$out/")
done
