#!/usr/bin/env bash
# Builds what `make release` ships into DIST (default dist/):
# a static binary and a .deb per architecture, and SHA256SUMS over them.
#   redwire-linux-amd64  redwire-linux-arm64  redwire-linux-armv7
#   redwire_<version>_amd64.deb  redwire_<version>_arm64.deb  redwire_<version>_armhf.deb
#
# Run it through make, which passes the same VERSION and LDFLAGS as
# `make build`, so the two never differ:
#   make release                         every architecture
#   make release RELEASE_ARCHES=amd64    one (what packaging/deb_test.go builds)
# The environment it reads: GO, VERSION, LDFLAGS, DIST, RELEASE_ARCHES,
# REDWIRE_DEB_MAINTAINER.
#
#   scripts/release.sh deb-version VERSION
# prints the Debian version made from a `git describe` VERSION and exits.
set -euo pipefail

# nfpm runs as a Go module through the module proxy, pinned; go.mod does
# not carry it (`go run pkg@version` needs no entry there).
NFPM=github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.45.2

# deb_version turns `git describe --tags --always --dirty` into a Debian
# version, which must start with a digit and may hold a hyphen only before
# a Debian revision (we have none):
#   v1.2.0             -> 1.2.0
#   v1.2.0-rc1         -> 1.2.0~rc1        (sorts before 1.2.0)
#   v1.2.0-3-gabc1234  -> 1.2.0+3.gabc1234 (sorts after 1.2.0)
#   023d829-dirty      -> 0.0.0+git.023d829+dirty (no tag yet)
deb_version() {
	local v=${1#v}
	# A tag is a dotted number; anything else is an abbreviated commit.
	[[ $v =~ ^[0-9]+(\.[0-9]+)+ ]] || v=0.0.0+git.$v
	v=$(sed -E 's/-(rc|alpha|beta)/~\1/; s/-/+/; s/-/./g' <<<"$v")
	# Anything else a describe string could hold is not allowed in a version.
	if [[ ! $v =~ ^[0-9][A-Za-z0-9.+~]*$ ]]; then
		echo "release.sh: cannot make a Debian version of ${1@Q}" >&2
		return 1
	fi
	printf '%s\n' "$v"
}

if [ "${1:-}" = deb-version ]; then
	deb_version "${2:?usage: release.sh deb-version VERSION}"
	exit
fi

: "${VERSION:?run through make release (VERSION unset)}"
: "${LDFLAGS:?run through make release (LDFLAGS unset)}"
GO=${GO:-go}
DIST=${DIST:-dist}
RELEASE_ARCHES=${RELEASE_ARCHES:-amd64 arm64 armv7}
export REDWIRE_DEB_MAINTAINER=${REDWIRE_DEB_MAINTAINER:-redwire maintainers <maintainers@redwire.invalid>}

cd "$(dirname "$0")/.."
deb_ver=$(deb_version "$VERSION")
# Package timestamps from the commit, not the clock: the same commit gives
# the same .deb (nfpm reads SOURCE_DATE_EPOCH).
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}
export SOURCE_DATE_EPOCH

# SHA256SUMS covers everything in DIST, so DIST holds this release only:
# what an earlier one left is removed, and anything else stops the build
# (DIST may be a directory of other things by mistake; nothing else of it
# is deleted).
mkdir -p "$DIST"
DIST=$(cd "$DIST" && pwd)
rm -f "$DIST"/redwire-linux-* "$DIST"/redwire_*.deb "$DIST/SHA256SUMS"
if [ -n "$(ls -A "$DIST")" ]; then
	echo "release.sh: $DIST holds files make release did not write; empty it or choose another DIST:" >&2
	ls -A "$DIST" >&2
	exit 1
fi

for arch in $RELEASE_ARCHES; do
	# name: GOARCH GOARM Debian architecture
	case $arch in
	amd64) goarch=amd64 goarm= debarch=amd64 ;;
	arm64) goarch=arm64 goarm= debarch=arm64 ;;
	armv7) goarch=arm goarm=7 debarch=armhf ;;
	*) echo "release.sh: unknown architecture ${arch@Q} (amd64, arm64, armv7)" >&2; exit 1 ;;
	esac
	bin=$DIST/redwire-linux-$arch
	echo "release: $bin ($VERSION)"
	CGO_ENABLED=0 GOOS=linux GOARCH=$goarch GOARM=$goarm \
		"$GO" build -trimpath -ldflags "$LDFLAGS" -o "$bin" ./cmd/redwire

	echo "release: redwire_${deb_ver}_$debarch.deb"
	REDWIRE_DEB_VERSION=$deb_ver REDWIRE_DEB_ARCH=$debarch REDWIRE_BINARY=$bin \
		"$GO" run "$NFPM" package --packager deb --config packaging/nfpm.yaml --target "$DIST/"
done

(cd "$DIST" && find . -maxdepth 1 -type f ! -name SHA256SUMS -printf '%f\n' | LC_ALL=C sort |
	xargs -r sha256sum >SHA256SUMS)
echo "release: $DIST/SHA256SUMS"
