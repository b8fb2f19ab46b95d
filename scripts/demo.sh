#!/usr/bin/env bash
# make demo: redwire between a loaded Redis and a real Prometheus receiver,
# scraping every second. The receiver is taken away for 20 s while redwire
# keeps scraping (its status says degraded, the backlog on disk grows),
# then brought back on the same port and data dir. Once redwire says the
# replay is over, the receiver itself is asked for every sample: a
# timeline in the terminal, the same as a PNG, and "N taken, N delivered,
# 0 lost". Exits 0 only if nothing was lost.
#
# Usage: scripts/demo.sh [REDWIRE_BINARY]   (default bin/redwire)
#   DEMO_KEEP=1      keep everything running afterwards, until Ctrl-C
#   DEMO_PNG=FILE    where the timeline picture is copied
#                    (default demo-timeline.png at the repository's root)
#   DEMO_OUTAGE=N    seconds without a receiver (default 20)
#
# The working directory (logs, the receiver's TSDB, redwire's buffer, the
# PNG) goes at the end; the PNG is copied out first. A failed demo keeps
# it and prints its path; with DEMO_KEEP it stays until Ctrl-C.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
redwire=$(realpath -m "${1:-bin/redwire}")
[ -x "$redwire" ] || { echo "no redwire binary at $redwire: make build makes one" >&2; exit 1; }
png_out=$(realpath -m "${DEMO_PNG:-$root/demo-timeline.png}")
outage=${DEMO_OUTAGE:-20}
keep=${DEMO_KEEP:-}

dir=$(mktemp -d -t redwire-demo.XXXXXX)
redis_pid='' load_pid='' prom_pid='' redwire_pid='' build_pid=''
ok=''          # set once the receiver was shown to hold everything
interrupted='' # set by Ctrl-C
cleanup() {
	trap - INT TERM EXIT
	# redwire first, so that it stops sending before the receiver goes.
	for p in "$redwire_pid" "$build_pid" "$load_pid" "$prom_pid" "$redis_pid"; do
		if [ -n "$p" ]; then kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; fi
	done
	if [ -n "$ok" ] || [ -n "$interrupted" ]; then
		rm -rf "$dir"
	else
		echo "the demo failed; its logs, TSDB and buffer are kept in $dir" >&2
	fi
}
trap cleanup EXIT
trap 'interrupted=1; exit 130' INT TERM

say() { echo "$(date +%T)  $*"; }
now_ms() { date +%s%3N; }
# sleep_until MS: sleep until that unix time in milliseconds.
sleep_until() {
	local d=$(($1 - $(now_ms)))
	if ((d > 0)); then sleep "$((d / 1000)).$(printf %03d $((d % 1000)))"; fi
}

# free_port prints a loopback port nobody answers on.
free_port() {
	local p
	for _ in $(seq 50); do
		p=$((20000 + RANDOM % 20000))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return; fi
	done
	echo "no free port found" >&2; return 1
}

wait_until() { # wait_until WHAT CMD...: poll for up to 30 s
	local what=$1; shift
	for _ in $(seq 300); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
	echo "timed out waiting for $what; logs in $dir" >&2; return 1
}

# The narrator, built while the servers start (a second when cached).
go -C "$root" build -o "$dir/demotimeline" ./scripts/demotimeline &
build_pid=$!
timeline() { "$dir/demotimeline" "$@"; }

redis_port=$(free_port); prom_port=$(free_port); web_port=$(free_port)
prom="http://127.0.0.1:$prom_port"
web="http://127.0.0.1:$web_port"

redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$dir" --save '' --appendonly no \
	--logfile "$dir/redis.log" &
redis_pid=$!
wait_until redis redis-cli -p "$redis_port" ping
for i in $(seq 100); do echo "SET demo:key:$i $i"; done | redis-cli -p "$redis_port" >/dev/null
# Load: about 50 INCRs a second, so the counters redwire sends move.
redis-cli -p "$redis_port" -r -1 -i 0.02 INCR demo:hits >/dev/null &
load_pid=$!
say "Redis on 127.0.0.1:$redis_port: 100 keys, and about 50 INCRs a second of load"

# A receiver that scrapes nothing: everything in its TSDB was written to it.
printf 'global: {}\nscrape_configs: []\n' >"$dir/prometheus.yml"
start_receiver() {
	prometheus --config.file="$dir/prometheus.yml" --storage.tsdb.path="$dir/prometheus" \
		--web.listen-address="127.0.0.1:$prom_port" --web.enable-remote-write-receiver \
		>>"$dir/prometheus.log" 2>&1 &
	prom_pid=$!
	wait_until "the receiver" curl -fsS "$prom/-/ready"
}
start_receiver
say "Prometheus $(prometheus --version 2>&1 | awk 'NR==1 {print $3}') receiving remote writes on $prom (TSDB in $dir/prometheus)"

# Degraded thinning off (--degraded.interval = the scrape interval), so
# that every second of the outage has its scrape; by default redwire
# scrapes 4 times less often while degraded, to stretch its disk.
from=$(now_ms)
"$redwire" --redis.addr="redis://127.0.0.1:$redis_port" \
	--remote-write.url="$prom/api/v1/write" \
	--scrape.interval=1s --degraded.interval=1s --remote-write.queue-config.batch-send-deadline=1s \
	--web.listen-address="127.0.0.1:$web_port" --buffer.path="$dir/buffer" \
	2>"$dir/redwire.log" &
redwire_pid=$!
wait_until redwire curl -fsS "$web/-/ready"
say "redwire scraping Redis every second and pushing to the receiver; its status: $web/api/v1/status"

arrived() { curl -fsS "$prom/api/v1/query" --data-urlencode 'query=redis_up' | grep -q '"value"'; }
wait_until "the first samples in the receiver" arrived
say "the first samples are in the receiver; 10 s of normal running"
wait "$build_pid"; build_pid=''
sleep 10
timeline status -redwire "$web"

say "taking the receiver away for $outage s: Prometheus stopped, its TSDB kept; redwire keeps scraping"
down_from=$(now_ms)
kill "$prom_pid"; wait "$prom_pid" || true; prom_pid=''
for ((t = 4; t <= outage; t += 4)); do
	sleep_until $((down_from + t * 1000))
	timeline status -redwire "$web"
done
sleep_until $((down_from + outage * 1000))

say "bringing the receiver back: same port, same TSDB"
start_receiver
down_to=$(now_ms)
say "the receiver answers again, $(((down_to - down_from + 500) / 1000)) s after it was stopped"
timeline wait -redwire "$web" -timeout 60s
sleep 3 # a few live scrapes after the replay, for the timeline

say "asking the receiver for every sample redwire sent since it started..."
png="$dir/timeline.png"
result=0
timeline report -redwire "$web" -receiver "$prom" -from "$from" \
	-down-from "$down_from" -down-to "$down_to" -png "$png" || result=$?
if [ -f "$png" ]; then
	mkdir -p "$(dirname "$png_out")" && cp "$png" "$png_out"
	echo "the timeline as a picture: $png_out"
fi
[ "$result" -eq 0 ] || exit "$result"
ok=1

if [ -n "$keep" ]; then
	echo
	echo "Everything keeps running (DEMO_KEEP); Ctrl-C stops it and removes $dir."
	echo "  receiver:        $prom/graph?g0.expr=redis_up&g0.range_input=5m"
	echo "  redwire status:  $web/api/v1/status"
	echo "  redwire metrics: $web/metrics"
	echo "  timeline:        $png_out (and $png)"
	echo "  logs:            $dir/redwire.log, $dir/prometheus.log, $dir/redis.log"
	trap 'exit 0' INT TERM
	wait "$redwire_pid"
fi
