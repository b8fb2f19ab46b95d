#!/usr/bin/env bash
# Builds the remote-write receivers that are not Debian packages, once:
# Prometheus 3.x and Thanos (for Thanos Receive). Each lands in the cache
# dir as NAME-VERSION and is built only while missing there, so a prepared
# machine pays nothing. A fresh one pays once: here, on 2 cores shared with
# other builds, Prometheus took 41 min (16 min of CPU) and Thanos 26 min,
# built at the same time; with Go's build cache warm, 30 s each.
#
#   usage: scripts/build-receivers.sh [prometheus|thanos]...  (default: both)
#   cache: ${REDWIRE_CACHE:-$HOME/.cache/redwire}/bin
#
# internal/harness (prometheus3.go, thanos.go) runs these exact names; a
# version changed here must change there too, and internal/harness
# checks that the two agree (TestPrometheus3AndThanosVersionsMatchBuildScript).
set -euo pipefail
shopt -s inherit_errexit

PROMETHEUS3_VERSION=v0.316.0 # Prometheus 3.x: the Go module of 3.y.z is v0.3yy.z
THANOS_VERSION=v0.42.4

cache=${REDWIRE_CACHE:-$HOME/.cache/redwire}
bin=$cache/bin
GO=${GO:-go}

# Whatever a build leaves behind (temp dirs, a half-written binary) goes
# when the script ends, however it ends; set -e ends it at the first
# failing step, and the trap says so.
cleanup=()
current=
finish() {
	local status=$?
	rm -rf "${cleanup[@]}"
	if [ "$status" -ne 0 ] && [ -n "$current" ]; then
		echo "FAILED: building $current (exit $status); see the output above" >&2
	fi
}
trap finish EXIT

# build NAME VERSION FUNCTION: runs FUNCTION VERSION OUT to write the binary to a
# temporary name beside its final one, then renames it into place, so an
# interrupted build never leaves a file that looks finished.
build() {
	local name=$1 version=$2 fn=$3
	local final=$bin/$name-$version
	[ -x "$final" ] && return 0
	mkdir -p "$bin"
	local tmp=$final.tmp.$$
	cleanup+=("$tmp")
	echo "building $name $version into $final (once; tens of minutes on 2 cores)"
	local start=$SECONDS
	current="$name $version"
	"$fn" "$version" "$tmp" # not under if: that would turn set -e off inside
	"$tmp" --version 2>&1 | sed -n 1p # it runs, and is the version asked for
	mv -f "$tmp" "$final"
	current=
	echo "built $name $version in $((SECONDS - start)) s"
}

# module_field MODULE@VERSION FIELD: downloads the module through the
# module proxy (or finds it in the module cache) and prints one field of
# go mod download -json: Dir (the source tree) or GoMod (its go.mod).
module_field() {
	local value
	value=$("$GO" mod download -json "$1" | sed -n "s/^[[:space:]]*\"$2\": \"\(.*\)\",\$/\1/p") || true
	[ -n "$value" ] || { echo "go mod download -json $1 gave no $2" >&2; return 1; }
	echo "$value"
}

# Prometheus installs as a plain module. GOBIN is a fresh dir so that the
# rename cannot pick up an older binary. Its --version is the release
# (3.16.0) that the module's VERSION file names, as its own builds say.
build_prometheus() {
	local version=$1 out=$2 gobin dir
	gobin=$(mktemp -d)
	cleanup+=("$gobin")
	dir=$(module_field "github.com/prometheus/prometheus@$version" Dir)
	GOBIN=$gobin "$GO" install \
		-ldflags "-X github.com/prometheus/common/version.Version=$(cat "$dir/VERSION")" \
		"github.com/prometheus/prometheus/cmd/prometheus@$version"
	mv "$gobin/prometheus" "$out"
}

# Thanos has replace directives in its go.mod, which `go install
# module@version` refuses. A throwaway module that requires Thanos and
# repeats its replace block builds the same dependency graph.
# slicelabels: Thanos v0.42's receive crashes on its first write with the
# default (stringlabels) label layout; its own release builds set the tag.
build_thanos() {
	local version=$1 out=$2 work gomod
	work=$(mktemp -d)
	cleanup+=("$work")
	gomod=$(module_field "github.com/thanos-io/thanos@$version" GoMod)
	{
		echo "module redwire.local/thanos-build"
		grep -m1 '^go ' "$gomod"
		echo "require github.com/thanos-io/thanos $version"
		# the replace block, from "replace (" to its closing ")"
		sed -n '/^replace (/,/^)/p' "$gomod"
		# and any one-line replace
		grep '^replace [^(]' "$gomod" || true
	} >"$work/go.mod"
	(
		cd "$work"
		# Resolves and records (go.sum) what the command's packages need.
		"$GO" get "github.com/thanos-io/thanos/cmd/thanos@$version"
		"$GO" build -tags slicelabels \
			-ldflags "-X github.com/prometheus/common/version.Version=${version#v}" \
			-o "$out" github.com/thanos-io/thanos/cmd/thanos
	)
}

want=("$@")
[ ${#want[@]} -eq 0 ] && want=(prometheus thanos)
for w in "${want[@]}"; do
	case $w in
	prometheus) build prometheus "$PROMETHEUS3_VERSION" build_prometheus ;;
	thanos) build thanos "$THANOS_VERSION" build_thanos ;;
	*) echo "unknown receiver $w; want prometheus or thanos" >&2; exit 2 ;;
	esac
done
