#!/usr/bin/env bash
# make demo: a throwaway Redis and a real Prometheus remote-write receiver on
# free loopback ports, redwire between them, and a query that shows the data
# arriving. Ctrl-C stops and removes everything.
set -euo pipefail
redwire=${1:-bin/redwire}

dir=$(mktemp -d -t redwire-demo.XXXXXX)
pids=()
cleanup() {
	trap - INT TERM EXIT
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$dir"
	echo; echo "demo stopped; removed $dir"
}
trap cleanup INT TERM EXIT

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

redis_port=$(free_port); prom_port=$(free_port); web_port=$(free_port)

redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$dir" --save '' --appendonly no \
	--logfile "$dir/redis.log" &
pids+=($!)
wait_until redis redis-cli -p "$redis_port" ping
for i in $(seq 100); do echo "SET demo:key:$i $i"; done | redis-cli -p "$redis_port" >/dev/null

printf 'global:\n  scrape_interval: 15s\n' >"$dir/prometheus.yml"
prometheus --config.file="$dir/prometheus.yml" --storage.tsdb.path="$dir/prometheus" \
	--web.listen-address="127.0.0.1:$prom_port" --web.enable-remote-write-receiver \
	>"$dir/prometheus.log" 2>&1 &
pids+=($!)
prom="http://127.0.0.1:$prom_port"
wait_until prometheus curl -fsS "$prom/-/ready"

"$redwire" --redis.addr="redis://127.0.0.1:$redis_port" \
	--remote-write.url="$prom/api/v1/write" \
	--scrape.interval=5s --remote-write.queue-config.batch-send-deadline=1s \
	--web.listen-address="127.0.0.1:$web_port" --buffer.path="$dir/buffer" \
	2>"$dir/redwire.log" &
pids+=($!)

query='redis_db_keys{db="db0"}'
echo "Redis on 127.0.0.1:$redis_port (100 keys in db0), Prometheus receiver on $prom,"
echo "redwire's own metrics on http://127.0.0.1:$web_port/metrics; logs in $dir"
echo "waiting for samples to arrive in the receiver..."
start=$SECONDS
until out=$(curl -fsS "$prom/api/v1/query" --data-urlencode "query=$query") && [[ $out == *'"value"'* ]]; do
	if ! kill -0 "${pids[2]}" 2>/dev/null; then echo "redwire exited:"; cat "$dir/redwire.log"; exit 1; fi
	if ((SECONDS - start > 60)); then echo "no data after 60 s; redwire log:"; cat "$dir/redwire.log"; exit 1; fi
	sleep 0.5
done
echo "data arrived after $((SECONDS - start)) s:"
echo "  $out"
echo
echo "Try it yourself:"
echo "  curl -s '$prom/api/v1/query' --data-urlencode 'query=$query'"
echo "  open $prom/graph?g0.expr=rate(redis_commands_total%5B1m%5D)&g0.tab=0"
echo
echo "Press Ctrl-C to stop."
wait "${pids[2]}"
