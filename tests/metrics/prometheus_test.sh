#!/bin/sh
# A real Prometheus on loopback scrapes metrics_demo's /metrics and finds
# the series through its HTTP API; it also loads the alerting rules.
#   prometheus_test.sh METRICS_DEMO RULES_YML
# Exit 0 pass, 1 fail, 77 skip (no prometheus binary).
# Ports: the demo serves on port 0 (the kernel picks a free one and the
# demo writes it to a file); Prometheus gets a free port found the same
# way, tried again on another one if it loses a race for it.  Every wait
# is a bounded poll (about 150 s at most in all, under ctest's TIMEOUT of
# 180 s); both servers are stopped by pid.
set -eu
demo=$1
rules=$2
if ! command -v prometheus >/dev/null 2>&1; then
    echo "SKIP: prometheus not found (Debian: apt-get install prometheus)"
    exit 77
fi
for tool in curl jq; do
    command -v "$tool" >/dev/null 2>&1 || { echo "FAIL: $tool not found"; exit 1; }
done
work=$(mktemp -d)
demo_pid=""
prom_pid=""
cleanup() {
    if [ -n "$prom_pid" ]; then kill "$prom_pid" 2>/dev/null || true; wait "$prom_pid" 2>/dev/null || true; fi
    if [ -n "$demo_pid" ]; then kill "$demo_pid" 2>/dev/null || true; wait "$demo_pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 1' INT TERM
fail() {
    echo "FAIL: $*"
    for f in "$work/demo.log" "$work/prom.log"; do
        [ -f "$f" ] && { echo "--- $f (last lines)"; tail -n 30 "$f"; }
    done
    exit 1
}

# A free loopback port: bind port 0, read it, let it go.
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()' 2>/dev/null ||
        echo $((20000 + ($$ + $1 * 7919) % 20000))
}

"$demo" serve 127.0.0.1:0 "$work/port" > "$work/demo.log" 2>&1 &
demo_pid=$!
i=0
until [ -s "$work/port" ]; do
    kill -0 "$demo_pid" 2>/dev/null || fail "metrics_demo exited early"
    i=$((i + 1)); [ "$i" -le 100 ] || fail "metrics_demo did not start in 10 s"
    sleep 0.1
done
demo_port=$(cat "$work/port")
curl -sf "http://127.0.0.1:$demo_port/metrics" | grep -q '^mapguard_entries{' ||
    fail "GET /metrics on port $demo_port has no mapguard_entries"

cat > "$work/prom.yml" <<YML
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - $rules
scrape_configs:
  - job_name: mapguard
    static_configs:
      - targets: ['127.0.0.1:$demo_port']
YML
promtool check config "$work/prom.yml" > "$work/check.log" 2>&1 ||
    { cat "$work/check.log"; fail "promtool check config"; }

# Start Prometheus; if it dies (its port was taken meanwhile), another port.
try=0
while :; do
    try=$((try + 1)); [ "$try" -le 3 ] || fail "prometheus did not start on 3 ports"
    prom_port=$(free_port "$try")
    prometheus --config.file="$work/prom.yml" --storage.tsdb.path="$work/data" \
        --web.listen-address="127.0.0.1:$prom_port" > "$work/prom.log" 2>&1 &
    prom_pid=$!
    i=0
    while kill -0 "$prom_pid" 2>/dev/null; do
        curl -sf "http://127.0.0.1:$prom_port/-/ready" >/dev/null 2>&1 && break 2
        i=$((i + 1)); [ "$i" -le 60 ] || fail "prometheus not ready in 30 s"
        sleep 0.5
    done
    wait "$prom_pid" 2>/dev/null || true
    prom_pid=""
    echo "prometheus exited on port $prom_port, trying another"
done
api="http://127.0.0.1:$prom_port/api/v1"

# query EXPR: the result array as JSON.
query() {
    curl -sf "$api/query" --data-urlencode "query=$1" | jq -c '.data.result'
}
# wait_for EXPR: poll until EXPR has a result (bounded: the first scrape
# comes up to a few seconds after start).
wait_for() {
    i=0
    while :; do
        r=$(query "$1" || echo '[]')
        [ "$r" != "[]" ] && [ -n "$r" ] && return 0
        i=$((i + 1)); [ "$i" -le 60 ] || fail "no result for $1 after 30 s"
        sleep 0.5
    done
}

wait_for 'mapguard_entries{map="sessions"}'
v=$(query 'mapguard_entries{map="sessions"}' | jq -r '.[0].value[1]')
[ "$v" = "1000" ] || fail "mapguard_entries{map=\"sessions\"} = $v, want 1000"
labels=$(query 'mapguard_entries{map="sessions"}' | jq -c '.[0].metric | del(.__name__)')
[ "$labels" = '{"instance":"127.0.0.1:'"$demo_port"'","job":"mapguard","map":"sessions","mode":"unsync"}' ] ||
    fail "labels $labels"
v=$(query 'up{job="mapguard"}' | jq -r '.[0].value[1]')
[ "$v" = "1" ] || fail "up = $v"
# every mode's series, as Prometheus parsed them
for expr in 'mapguard_entries{map="cache",mode="sharded"} == 2000' \
            'mapguard_shards{map="cache"}' \
            'mapguard_readmostly_promotions_total{map="config"}' \
            'mapguard_snapshots_published_total{map="routes"}' \
            'mapguard_actor_queue_capacity{map="jobs"}' \
            'mapguard_grows_total{map="sessions",kind="double"} > 0' \
            'mapguard_load_factor{map="users"} > 0' \
            'mapguard_entries{map="dup",id="2"} == 2' \
            'mapguard_fatal_errors_total{kind="concurrent_map_writes"} == 0' \
            'mapguard_build_info == 1'; do
    r=$(query "$expr")
    [ "$r" != "[]" ] && [ -n "$r" ] || fail "no result for $expr"
done
# the label value with a quote, a backslash and a newline came through
n=$(curl -sf "$api/label/map/values" | jq -r '.data[]' | grep -c 'ird\\$' || true)
[ "$n" = "1" ] || fail "escaped map name not found in /api/v1/label/map/values"
# metadata: types and help as rendered
t=$(curl -sf "$api/metadata?metric=mapguard_grows_total" | jq -r '.data.mapguard_grows_total[0].type')
[ "$t" = "counter" ] || fail "mapguard_grows_total type $t"
t=$(curl -sf "$api/metadata?metric=mapguard_load_factor" | jq -r '.data.mapguard_load_factor[0].type')
[ "$t" = "gauge" ] || fail "mapguard_load_factor type $t"
# the target is healthy and the rules loaded and evaluate without error
h=$(curl -sf "$api/targets" | jq -r '.data.activeTargets[0].health')
[ "$h" = "up" ] || fail "target health $h"
i=0
while :; do
    bad=$(curl -sf "$api/rules" | jq -r '[.data.groups[].rules[] | select(.health != "ok")] | length')
    n=$(curl -sf "$api/rules" | jq -r '[.data.groups[].rules[]] | length')
    [ "$n" -gt 0 ] && [ "$bad" = "0" ] && \
        [ "$(curl -sf "$api/rules" | jq -r '[.data.groups[].rules[] | select(.lastEvaluation | startswith("0001"))] | length')" = "0" ] && break
    i=$((i + 1)); [ "$i" -le 60 ] || fail "rules: $n loaded, $bad not ok"
    sleep 0.5
done

# Stop both by pid; the demo must exit 0 on SIGTERM.
kill "$prom_pid"; wait "$prom_pid" || true; prom_pid=""
kill "$demo_pid"
rc=0; wait "$demo_pid" || rc=$?
demo_pid=""
[ "$rc" -eq 0 ] || fail "metrics_demo exited $rc on SIGTERM"
echo "prometheus_test: scraped 127.0.0.1:$demo_port from Prometheus on 127.0.0.1:$prom_port, $n rules ok"
