#!/bin/sh
# promtool check metrics on the exposition of a program with a named map
# of every mode (metrics_demo dump), plus what promtool does not check: no
# series twice, every mode's families there, and every mapguard_* name the
# alerting rules use is one the renderer writes.
#   check_metrics.sh METRICS_DEMO RULES_YML
# Exit 0 pass, 1 fail, 77 skip (no promtool).
set -eu
demo=$1
rules=$2
if ! command -v promtool >/dev/null 2>&1; then
    echo "SKIP: promtool not found (Debian: apt-get install prometheus)"
    exit 77
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$demo" dump > "$work/out.prom"
fail=0
if ! promtool check metrics < "$work/out.prom" 2> "$work/lint.txt"; then
    echo "FAIL: promtool check metrics:"; cat "$work/lint.txt"; fail=1
fi
# promtool exits 0 on duplicate series: the part before the value is the
# series (name and labels); none may repeat.
dups=$(grep -v '^#' "$work/out.prom" | sed 's/ [^ ]*$//' | sort | uniq -d)
if [ -n "$dups" ]; then
    echo "FAIL: duplicate series:"; echo "$dups"; fail=1
fi
for want in 'mapguard_entries{map="sessions",mode="unsync"} 1000' \
            'mapguard_entries{map="users",mode="rwlock"} 500' \
            'mapguard_entries{map="cache",mode="sharded"} 2000' \
            'mapguard_entries{map="config",mode="readmostly"} 300' \
            'mapguard_entries{map="routes",mode="snapshot"} 100' \
            'mapguard_entries{map="jobs",mode="actor"} 50' \
            'mapguard_entries{map="dup",mode="unsync",id="2"} 2' \
            'mapguard_entries{map="we\"ird\\\nname",mode="unsync"} 3'; do
    if ! grep -qxF "$want" "$work/out.prom"; then
        echo "FAIL: no line: $want"; fail=1
    fi
done
# A name that is not UTF-8 ("bad" FF C0 AF "name"): each ill-formed byte is
# U+FFFD (EF BF BD), so promtool above accepts the label value.
want=$(printf 'mapguard_entries{map="bad\357\277\275\357\277\275\357\277\275name",mode="unsync"} 4')
if ! LC_ALL=C grep -qxF "$want" "$work/out.prom"; then
    echo "FAIL: no line: $want"; fail=1
fi
for fam in mapguard_build_info mapguard_maps mapguard_fatal_errors_total \
           mapguard_map_info mapguard_entries mapguard_buckets mapguard_buckets_log2 \
           mapguard_load_factor mapguard_overflow_buckets mapguard_grows_total \
           mapguard_shrinks_total mapguard_old_buckets mapguard_evacuated_buckets \
           mapguard_evacuation_progress_ratio mapguard_memory_bytes \
           mapguard_readmostly_misses_total mapguard_readmostly_promotions_total \
           mapguard_snapshots_published_total mapguard_snapshots_retired_total \
           mapguard_actor_queue_depth mapguard_actor_queue_capacity \
           mapguard_shards mapguard_shard_entries_min mapguard_shard_entries_max; do
    if ! grep -q "^# TYPE $fam " "$work/out.prom"; then
        echo "FAIL: family $fam missing"; fail=1
    fi
done
# The names the rules use (less the recording-rule style ones with ':').
for name in $(grep -o 'mapguard_[a-z0-9_]*' "$rules" | sort -u); do
    if ! grep -q "^# TYPE $name " "$work/out.prom"; then
        echo "FAIL: $rules uses $name, which the renderer does not write"; fail=1
    fi
done
if [ "$fail" -ne 0 ]; then
    echo "--- exposition:"; cat "$work/out.prom"
    exit 1
fi
echo "check_metrics: promtool clean, $(grep -vc '^#' "$work/out.prom") samples, no duplicates"
