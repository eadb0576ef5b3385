#!/bin/sh
# gdb_test.sh CASE PROG SOURCE_DIR WORK_DIR [LIB] - the gdb extension
# (tools/gdb/mapguard_gdb.py) on PROG (gdb_fatal.c), which dies in a
# mapguard fatal.  CASE:
#   constants  the extension's constants equal src/internal.h and its layout
#              the debug info (tests/gdb/check_constants.py)
#   live       gdb runs PROG, stops at the SIGABRT of the fatal, and the
#              printers and commands must show what PROG's own mg_stats said
#   core       the same on a core dump: the kernel's if it writes one in the
#              working directory, else one that gdb's gcore takes of PROG
#              stopped at the fatal (the message says which)
#   autoload   PROG linked with the shared library LIB: gdb, given no
#              script, loads the extension from LIB's auto-load file
# Exit 0: pass; 1: fail (with the gdb output); 77: skipped (no gdb, no
# Python in gdb, or no ptrace here).  MG_GDB_TEST_GCORE=1: the core case
# uses gcore even where the kernel writes a core.
set -u
case_=$1
prog=$2
src=$3
work=$4
ext=$src/tools/gdb/mapguard_gdb.py

out=
fail() {
    echo "FAIL ($case_): $*"
    if [ -n "$out" ] && [ -f "$out" ]; then
        echo "--- $out ---"
        cat "$out"
    fi
    exit 1
}
skip() {
    echo "SKIP ($case_): $*"
    exit 77
}

command -v gdb >/dev/null 2>&1 || skip "gdb is not installed"
gdb -nx -batch -ex 'python print("mg-py" + "-ok")' 2>&1 | grep -q 'mg-py-ok' ||
    skip "this gdb has no Python scripting"
T=
if command -v timeout >/dev/null 2>&1; then
    T="timeout -k 10 90"
fi
rm -rf "$work" && mkdir -p "$work" && cd "$work" || fail "cannot make $work"

# gdb on PROG (and a core, if given), the extension sourced, system
# auto-loaded scripts off (an installed copy would load twice).
gdb_batch() {
    $T gdb -nx -batch -iex 'set auto-load python-scripts off' -x "$ext" "$@"
}

if [ "$case_" = constants ]; then
    out=$work/gdb.out
    MG_SOURCE_DIR=$src gdb_batch -x "$src/tests/gdb/check_constants.py" "$prog" >"$out" 2>&1
    grep -q '^MG-CONSTANTS-OK' "$out" || fail "constants differ from src/internal.h"
    grep '^MG-CONSTANTS-OK' "$out"
    exit 0
fi

# The commands, the same for a live process and a core:
# run_commands FIRST PROG [CORE], FIRST the command that stops PROG.
run_commands() {
    first=$1
    shift
    gdb_batch -ex "$first" -ex 'frame function main' \
        -ex 'print *m' -ex 'print m' -ex 'mg-growth m' -ex 'mg-buckets m 4' \
        -ex 'print *b' -ex 'mg-buckets b' \
        -ex 'print *rw' -ex 'mg-growth rw' \
        -ex 'print *busy' -ex 'print *freed' -ex 'print *(mg_map *)junk' \
        -ex 'print (mg_map *)8' -ex 'print st' -ex 'mg-maps' -ex 'bt' \
        -ex 'echo @@mg-buckets-all\n' -ex 'mg-buckets m 256' "$@"
}

# has TEXT: the gdb output has a line containing TEXT (fixed string).
has() {
    grep -qF -- "$1" "$out" || fail "expected a line with: $1"
}
# field NAME: NAME=value from PROG's "stats:" / "maps:" lines.
field() {
    sed -n -e "s/^stats:.* $1=\([^ ]*\).*/\1/p" -e "s/^maps:.* $1=\([^ ]*\).*/\1/p" \
        "$progout" | head -n 1
}

# What PROG reported before it died, and what gdb must show.
check() {
    grep -q '^stats: ' "$progout" || fail "PROG printed no stats line ($progout)"
    count=$(field count)
    B=$(field B)
    buckets=$(field buckets)
    growing=$(field growing)
    kind=$(field kind)
    ev=$(field evacuated)
    old=$(field old_buckets)
    ovf=$(field overflow)
    gt=$(field grows_total)
    load=$(field load)
    bytes=$(field bytes)
    m=$(field m)
    b=$(field b)
    rw=$(field rw)
    busy=$(field busy)
    freed=$(field freed)
    junk=$(field junk)
    [ -n "$junk" ] || fail "PROG printed no maps line"
    # PROG's own map is where it was built to be: part way through the
    # doubling from B 7 to B 8 (FULL_B7 + 1 + EXTRA keys, gdb_fatal.c).
    [ "$count/$B/$buckets/$growing/$kind/$old" = "853/8/256/1/double/128" ] ||
        fail "PROG's map is not mid-doubling: $(grep '^stats:' "$progout")"
    [ "$ev" -gt 0 ] && [ "$ev" -lt "$old" ] || fail "evacuated $ev of $old: not mid-evacuation"

    grep -q -e 'Python Exception' -e 'Error occurred in Python' "$out" && fail "the extension raised"
    grep -q 'warning: mapguard_gdb' "$out" && fail "the extension warned about its constants"

    # print *m: the header, as mg_stats_get saw it.
    has "= mg_map \"gdbtest\" @ $m {mode = unsync, keys = u64, count = $count, B = $B, buckets = $buckets, load_factor = $load, growing = double, $ev/$old old buckets evacuated (nevacuate $ev), overflow = $ovf, grows_total = $gt, same_size_grows_total = 0, shrinks_total = 0, writer = none, bytes = $bytes}"
    has "= (mg_map *) $m \"gdbtest\""
    # mg-growth m
    has "map \"gdbtest\" @ $m: growing (double)"
    has "  old B = 7 (128 old buckets) -> new B = 8 (256 buckets)"
    has "  nevacuate = $ev (old buckets below it are evacuated)"
    has "  evacuated = $ev/$old old buckets ("
    has "  count = $count, load_factor = $load, overflow = $ovf"
    scanned=$(sed -n 's|^  tophash scan: \([0-9]*\)/128 old buckets evacuated$|\1|p' "$out")
    [ -n "$scanned" ] || fail "no tophash scan line"
    # Writes evacuate the bucket they touch too: at least nevacuate.
    [ "$scanned" -ge "$ev" ] && [ "$scanned" -le "$old" ] ||
        fail "tophash scan found $scanned evacuated, nevacuate is $ev"
    # mg-buckets m 4
    has "buckets @ "
    has ": B 8, 256 buckets, "
    has "oldbuckets @ "
    has ": B 7, 128 buckets, grow kind double, nevacuate $ev; first 4:"
    for i in 0 1 2 3; do
        has "bucket $i:"
        if [ "$i" -lt "$ev" ]; then
            has "old bucket $i: evacuated"
        else
            grep -q "^old bucket $i: \(not \)\{0,1\}evacuated$" "$out" ||
                fail "no state for old bucket $i"
        fi
    done
    # The whole map (mg-buckets m 256, after the marker): the keys in the
    # bucket array and in the old buckets not evacuated yet are exactly the
    # count (the essay's I5), each once (I4), each a key PROG put with its
    # value (key * 10).
    sed -n '/^@@mg-buckets-all$/,$p' "$out" |
        sed -n 's/^    slot [0-7]: key \([0-9]*\) val \([0-9]*\)$/\1 \2/p' >"$work/keys"
    nkeys=$(wc -l <"$work/keys" | tr -d ' ')
    nuniq=$(cut -d' ' -f1 "$work/keys" | sort -u | wc -l | tr -d ' ')
    [ "$nkeys" = "$count" ] || fail "mg-buckets m 256 showed $nkeys keys, count is $count"
    [ "$nuniq" = "$count" ] || fail "mg-buckets m 256 showed a key twice"
    badkv=$(awk -v n="$count" '$1 < 1 || $1 > n || $2 != $1 * 10' "$work/keys" | head -n 1)
    [ -z "$badkv" ] || fail "mg-buckets showed a key PROG never put: $badkv"
    # The byte-key map
    has "= mg_map \"gdbbytes\" @ $b {mode = unsync, keys = bytes, count = 2, B = 0, buckets = 1, load_factor = 2.00, growing = no, overflow = 0,"
    has "key len 5 b'alpha' val 1"
    has "key len 31 b'a key longer tha'... val 2"
    # The RWLOCK map and its engine map
    has "= mg_map \"gdbrw\" @ $rw {mode = rwlock, keys = u64, engine = 0x"
    has " {count = 3, B = 0, growing = no}}"
    has "map \"gdbrw\" @ $rw: mode rwlock, its engine map:"
    has ": not growing"
    # Writer, freed, corrupt, unreadable
    has "= mg_map \"gdbbusy\" @ $busy {mode = unsync, keys = u64, count = 1,"
    wtid=$(field writer_tid)
    has "writer = thread $wtid (gdb thread "
    has "= mg_map @ $freed: freed (magic MG_MAGIC_FREED: used after mg_free)"
    has "= mg_map @ $junk: corrupt header (magic 0xabababababababab"
    has "= (mg_map *) 0x8 <unreadable>"
    # mg_stats and the registry
    has "= mg_stats {count = $count, buckets = $buckets, overflow_buckets = $ovf, B = $B, load_factor = $load, growing = true, same_size_grow = false, shrinking = false, evacuated = $ev, old_buckets = $old, grows_total = $gt, same_size_grows_total = 0, shrinks_total = 0, bytes = $bytes}"
    has "4 named map(s)"
    has "[0] map \"gdbtest\" @ $m: unsync, u64 keys, count $count, B $B, growing double, $ev/$old old buckets evacuated (nevacuate $ev)"
    has "[2] map \"gdbrw\" @ $rw: rwlock, u64 keys"
    grep -q '^#[0-9]*  0x[0-9a-f]* in main ' "$out" || fail "no main frame in the backtrace"
}

case $case_ in
autoload)
    lib=$5
    [ -f "$lib-gdb.py" ] ||
        skip "no $lib-gdb.py: tools/gdb is not part of this build (add_subdirectory(tools/gdb))"
    out=$work/gdb.out
    libdir=$(dirname "$lib")
    $T gdb -nx -batch -iex "add-auto-load-safe-path $libdir" -ex run \
        -ex 'frame function main' -ex 'print *m' -ex 'mg-growth m' "$prog" >"$out" 2>&1
    grep -q 'received signal SIGABRT' "$out" ||
        { grep -qi 'ptrace' "$out" && skip "gdb cannot run programs here (ptrace)"; } ||
        fail "PROG did not stop at SIGABRT under gdb"
    grep -q -e 'Python Exception' -e 'Error occurred in Python' -e 'warning: mapguard' "$out" &&
        fail "the auto-loaded extension raised or warned"
    progout=$out
    m=$(field m)
    ev=$(field evacuated)
    has "= mg_map \"gdbtest\" @ $m {mode = unsync, keys = u64, count = 853, B = 8,"
    has "map \"gdbtest\" @ $m: growing (double)"
    has "  nevacuate = $ev (old buckets below it are evacuated)"
    echo "PASS (autoload): $lib-gdb.py loaded the extension"
    ;;
live)
    out=$work/gdb.out
    progout=$out # PROG's stdout is gdb's
    run_commands run "$prog" >"$out" 2>&1
    grep -q 'received signal SIGABRT' "$out" ||
        { grep -qi 'ptrace' "$out" && skip "gdb cannot run programs here (ptrace)"; } ||
        fail "PROG did not stop at SIGABRT under gdb"
    has "fatal error: assignment to entry in nil map"
    check
    echo "PASS (live): map mid-doubling, $ev/$old evacuated, scan $scanned"
    ;;
core)
    progout=$work/prog.out
    ulimit -c unlimited 2>/dev/null
    $T "$prog" >"$progout" 2>"$work/prog.err"
    rc=$?
    [ "$rc" -eq 134 ] || echo "note: PROG exited $rc (134 expected: SIGABRT)"
    grep -q 'fatal error: assignment to entry in nil map' "$work/prog.err" ||
        { out=$work/prog.err; fail "PROG did not report the nil map fatal"; }
    core=
    # MG_GDB_TEST_GCORE=1 takes the gcore path even where the kernel dumps.
    [ "${MG_GDB_TEST_GCORE:-0}" = 1 ] && rm -f core core.*
    for f in core core.*; do
        [ -f "$f" ] && { core=$work/$f; break; }
    done
    if [ -n "$core" ]; then
        how="kernel core dump"
    else
        pattern=$(cat /proc/sys/kernel/core_pattern 2>/dev/null || echo unknown)
        echo "note: no core file in $work (core_pattern '$pattern', ulimit -c $(ulimit -c)); taking one with gdb's gcore"
        how="gcore"
        core=$work/core.gcore
        out=$work/gcore.out
        progout=$out
        $T gdb -nx -batch -ex run -ex "gcore $core" "$prog" >"$out" 2>&1
        [ -f "$core" ] || { grep -qi 'ptrace' "$out" && skip "gdb cannot run programs here (ptrace)"; } ||
            fail "gcore wrote no core"
    fi
    out=$work/gdb.out
    run_commands 'info inferiors' "$prog" "$core" >"$out" 2>&1
    has "Program terminated with signal SIGABRT"
    check
    echo "PASS (core, $how): map mid-doubling, $ev/$old evacuated, scan $scanned"
    ;;
*)
    fail "unknown case (constants, live or core)"
    ;;
esac
exit 0
