#!/bin/bash
# Bytes the agent writes to disk (block I/O, /proc/PID/io write_bytes) in
# 60 s with a healthy receiver, 1 s scrapes of one loaded Redis; then the
# same with buffer.mode: always. Prints one line per mode.
set -e
BIN=$1; DUR=${2:-60}
T=$(mktemp -d); trap 'kill $(jobs -p) 2>/dev/null; rm -rf $T' EXIT
RP=$((20000 + RANDOM % 10000)); PP=$((RP+1)); WP=$((RP+2))
redis-server --port $RP --save "" --appendonly no --daemonize no >/dev/null 2>&1 &
printf 'global: {}\n' > $T/prom.yml
prometheus --config.file=$T/prom.yml --storage.tsdb.path=$T/tsdb --web.listen-address=127.0.0.1:$PP --web.enable-remote-write-receiver >/dev/null 2>&1 &
until curl -sf http://127.0.0.1:$PP/-/ready >/dev/null; do sleep 0.2; done
redis-benchmark -p $RP -q -n 100000000 -c 4 -t set,get >/dev/null 2>&1 &
for mode in spill always; do
  rm -rf $T/buf $T/shm; mkdir -p $T/shm
  $BIN --redis.addr=redis://127.0.0.1:$RP --remote-write.url=http://127.0.0.1:$PP/api/v1/write \
    --scrape.interval=1s --buffer.path=$T/buf --buffer.mode=$mode --buffer.crash-journal=/dev/shm/redwire-wb-$$ \
    --web.listen-address=127.0.0.1:$WP --no-self-metrics.enabled 2>/dev/null &
  pid=$!
  until curl -sf http://127.0.0.1:$WP/metrics | grep -q '^redwire_target_scrapes_total.* [1-9]'; do sleep 0.2; done
  w0=$(awk '/^write_bytes/{print $2}' /proc/$pid/io); sleep $DUR
  w1=$(awk '/^write_bytes/{print $2}' /proc/$pid/io); kill $pid  # the measured window: $DUR seconds of running; wait $pid 2>/dev/null || true
  rm -rf /dev/shm/redwire-wb-$$
  echo "mode=$mode seconds=$DUR disk_write_bytes=$((w1-w0)) per_day=$(( (w1-w0) * 86400 / DUR ))"
done
