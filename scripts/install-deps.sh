#!/usr/bin/env bash
# Installs the Debian packages redwire's tests, demo and benchmarks run for
# real, but only those whose binary is missing, so a prepared machine pays
# nothing. Usage: scripts/install-deps.sh BINARY=PACKAGE...
#   e.g. scripts/install-deps.sh redis-server=redis-server prometheus=prometheus
set -euo pipefail

missing=()
for pair in "$@"; do
	bin=${pair%%=*}
	pkg=${pair#*=}
	command -v "$bin" >/dev/null 2>&1 || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
	echo "missing packages: ${missing[*]}; install them with your package manager (this script knows apt-get only)" >&2
	exit 1
fi
as_root=()
if [ "$(id -u)" -ne 0 ]; then
	if command -v sudo >/dev/null 2>&1; then
		as_root=(sudo)
	else
		echo "missing packages: ${missing[*]}; run as root or install sudo" >&2
		exit 1
	fi
fi

echo "installing Debian packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${as_root[@]}" apt-get update -qq
"${as_root[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
for pair in "$@"; do
	bin=${pair%%=*}
	command -v "$bin" >/dev/null 2>&1 || { echo "$bin still missing after installing its package" >&2; exit 1; }
done
