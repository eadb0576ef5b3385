#!/bin/sh
# check.sh CASE - one `mapguard analyze` test (tests/analyze/CMakeLists.txt).
#
# Environment (set by ctest):
#   MAPGUARD   the mapguard binary          FIXTURES  tests/analyze/fixtures
#   WORK       a scratch directory          MG_CRASH  the mg_crash program
#   GO         the go binary ("" or missing: the Go cases skip, exit 77)
#   GO_SRC     tests/analyze/go             GOCACHE, GOPATH  inside the build
#
# Each case runs analyze, checks its exit status and that its output names
# what it must; every --json output must parse (python3, else jq).  A
# failure prints the output and exits 1.
set -u
case_name=$1
dir=$WORK/$case_name
rm -rf "$dir" && mkdir -p "$dir" || exit 1
out=$dir/out
err=$dir/err

fail() {
    echo "FAIL ($case_name): $*"
    echo "--- stdout"; head -c 20000 "$out" 2>/dev/null
    echo "--- stderr"; head -c 4000 "$err" 2>/dev/null
    exit 1
}

# an FILE ARGS... : run analyze, rc in $rc
an() {
    f=$1; shift
    "$MAPGUARD" analyze "$@" "$f" >"$out" 2>"$err"
    rc=$?
    [ "$rc" -lt 3 ] || fail "exit status $rc (a crash?)"
    # under sanitizers an error may exit 1: look for the report itself
    ! grep -q "Sanitizer\|runtime error:" "$err" || fail "sanitizer report"
}

want_rc() { [ "$rc" -eq "$1" ] || fail "exit status $rc, want $1"; }
has() { grep -qF -- "$1" "$out" || fail "stdout lacks: $1"; }
has_err() { grep -qF -- "$1" "$err" || fail "stderr lacks: $1"; }

valid_json() {
    if command -v python3 >/dev/null 2>&1; then
        python3 -m json.tool "$out" >/dev/null 2>"$dir/json.err" ||
            fail "not valid JSON: $(cat "$dir/json.err")"
    elif command -v jq >/dev/null 2>&1; then
        jq -e . "$out" >/dev/null 2>"$dir/json.err" || fail "not valid JSON"
    fi
}

# json_has KEY VALUE : the JSON output has "KEY": VALUE (as printed)
json_has() { grep -qF -- "\"$1\": $2" "$out" || fail "JSON lacks \"$1\": $2"; }

# both FILE RC KIND : text and JSON runs agree on the exit status and kind
both() {
    an "$1"; want_rc "$2"
    an "$1" --json; want_rc "$2"; valid_json; json_has kind "\"$3\""
}

go_build() { # go_build CASE -> $dir/CASE
    if [ -z "${GO:-}" ] || ! [ -x "$GO" ]; then
        echo "go not found: skipped"; exit 77
    fi
    GO111MODULE=off GOFLAGS= "$GO" build -o "$dir/$1" "$GO_SRC/$1/main.go" ||
        fail "go build $1"
}

# go_crash CASE KIND : a real Go crash, explained
go_crash() {
    go_build "$1"
    timeout 60 "$dir/$1" 2>"$dir/stderr.txt"
    grc=$?
    [ "$grc" -eq 2 ] || fail "the Go program exited $grc, want 2"
    both "$dir/stderr.txt" 0 "$2"
}

case $case_name in
# ---- unit: fixtures -----------------------------------------------------
fixture_writes_leak)
    f=$FIXTURES/go_writes_leak.txt
    both "$f" 0 concurrent-map-writes
    an "$f"
    has "root cause: concurrent map writes: two goroutines wrote one map"
    has "goroutine 5 [running] - detected the misuse"
    has "at main.recordSessions  /home/dev/leakdemo/main.go:33"
    has "created by main.main  /home/dev/leakdemo/main.go:63"
    has "goroutine 6 [runnable] - probably the other writer"
    has "fix: guard the map with a sync.Mutex"
    has "goroutines: 207 in 6 groups of identical stacks"
    has "200 goroutines [chan receive, 7-12 minutes]: main.worker  /home/dev/leakdemo/main.go:21  created by main.main  /home/dev/leakdemo/main.go:48"
    has "LEAK? 200 goroutines blocked on [chan receive] for 7-12 minutes at main.worker"
    # three goroutines waiting 3 minutes on a mutex: not a channel leak
    grep -q "LEAK? 3 " "$out" && fail "semacquire flagged as a leak"
    an "$f" --json
    valid_json; json_has leaks 1; json_has stacks 207; json_has count 200
    an "$f" --leak-threshold 201
    grep -q "LEAK?" "$out" && fail "leak flagged above the threshold"
    an "$f" --top 2
    has "... 4 more groups"
    ;;
fixture_sigquit)
    # A real SIGQUIT dump: 200 workers blocked on a receive for less than
    # a minute, so no wait is printed and no leak is flagged.
    f=$FIXTURES/go_sigquit_200.txt
    both "$f" 0 goroutine-dump
    an "$f"
    has "a goroutine dump (SIGQUIT: quit), not a crash"
    has "200 goroutines [chan receive]: main.worker  /home/dev/leakdemo/main.go:21"
    grep -q "LEAK?" "$out" && fail "leak flagged without minutes"
    grep -q "^involved" "$out" && fail "a dump has no crashing goroutine"
    ;;
fixture_mapguard_text)
    f=$FIXTURES/mapguard_writes.txt
    both "$f" 0 concurrent-map-writes
    an "$f"
    has "mapguard crash report: fatal error: concurrent map writes"
    has "two threads wrote one map"
    has 'map "sessions" 0x'
    has "detected the misuse"
    has "the other party"
    has "at session_writer"
    has "fix: create the map in a thread-safe mode"
    ;;
fixture_mapguard_json)
    f=$FIXTURES/mapguard_writes.json
    both "$f" 0 concurrent-map-writes
    an "$f"
    has "mapguard crash report: fatal error: concurrent map writes"
    has 'map: "sessions"'
    has "at session_writer"
    has "the other party"
    ;;
fixture_messages)
    # every message mapguard and Go print, as a one-line report
    # (GOTRACEBACK=none / MAPGUARD_TRACEBACK=none)
    while read -r kind msg; do
        printf 'fatal error: %s\n' "$msg" >"$dir/one.txt"
        both "$dir/one.txt" 0 "$kind"
    done <<EOF
concurrent-map-writes concurrent map writes
concurrent-map-read-write concurrent map read and map write
concurrent-map-iteration-write concurrent map iteration and map write
nil-map assignment to entry in nil map
freed-map use of freed map
corrupted-map corrupted map header
wrong-key-kind wrong key kind for map
mapguard-internal mapguard internal error
deadlock all goroutines are asleep - deadlock!
fatal-error something else entirely
EOF
    printf 'panic: assignment to entry in nil map\n' >"$dir/one.txt"
    both "$dir/one.txt" 0 nil-map
    printf 'panic: boom [recovered]\n\tpanic: boom\n' >"$dir/one.txt"
    both "$dir/one.txt" 0 go-panic
    an "$dir/one.txt"; has "a Go panic: boom (not a map misuse)"
    # the JSON report with its exception.type only
    printf '{"attributes":[{"key":"exception.type","value":{"stringValue":"mapguard.UseOfFreedMap"}}]}\n' >"$dir/t.json"
    both "$dir/t.json" 0 freed-map
    ;;
go_formats)
    # newer Go headers (gp=, m=), waits with "locked to thread", "created by
    # X in goroutine N", a goroutine whose stack is unavailable
    cat >"$dir/new.txt" <<'EOF'
fatal error: concurrent map writes

goroutine 21 gp=0xc000102380 m=4 mp=0xc000080008 [running]:
main.store(...)
	/app/store.go:12 +0x45
created by main.serve in goroutine 1
	/app/main.go:30 +0x99

goroutine 1 gp=0xc0000061c0 m=nil [chan receive, 3 minutes, locked to thread]:
main.main()
	/app/main.go:40 +0x120

goroutine 22 gp=0x1 m=5 mp=0x2 [running]:
	goroutine running on other thread; stack unavailable
created by main.serve in goroutine 1
	/app/main.go:30 +0x99
EOF
    both "$dir/new.txt" 0 concurrent-map-writes
    an "$dir/new.txt"
    has "goroutine 21 [running] - detected the misuse"
    has "at main.store  /app/store.go:12"
    has "created by main.serve  /app/main.go:30"
    has "goroutine 22 [running] - probably the other writer"
    has "stack unavailable"
    has "1 goroutine [chan receive, 3 minutes]: main.main  /app/main.go:40"
    # a nil dereference under net/http: the first frame of user code
    cat >"$dir/nil.txt" <<'EOF'
panic: runtime error: invalid memory address or nil pointer dereference
[signal SIGSEGV: segmentation violation code=0x1 addr=0x0 pc=0x47f3c2]

goroutine 7 [running]:
main.(*Server).handle(0x0, {0x4b5e80, 0xc000012345})
	/app/server.go:88 +0x22
net/http.HandlerFunc.ServeHTTP(0x0?, {0x5c1d40?, 0xc0001a2000?}, 0x0?)
	/usr/local/go/src/net/http/server.go:2109 +0x2f
created by net/http.(*Server).Serve
	/usr/local/go/src/net/http/server.go:3102 +0x4db
EOF
    both "$dir/nil.txt" 0 nil-dereference
    an "$dir/nil.txt"
    has "detail: [signal SIGSEGV"; has "at main.(*Server).handle  /app/server.go:88"
    # a deadlock, as `go run` prints it
    printf 'fatal error: all goroutines are asleep - deadlock!\n\ngoroutine 1 [chan receive]:\nmain.main()\n\t/app/main.go:9 +0x2d\nexit status 2\n' >"$dir/dl.txt"
    both "$dir/dl.txt" 0 deadlock
    an "$dir/dl.txt"; has "goroutine 1 [chan receive] - blocked"
    ;;
# ---- unit: bad input ----------------------------------------------------
empty)
    : >"$dir/empty"
    an "$dir/empty"; want_rc 2; has_err "empty input"
    an "$dir/empty" --json; want_rc 2; valid_json; json_has ok false
    printf '  \n\n\t\n' >"$dir/ws"
    an "$dir/ws"; want_rc 2; has_err "empty input"
    an - </dev/null; want_rc 2; has_err "<stdin>: empty input"
    ;;
binary)
    head -c 300000 "$MAPGUARD" >"$dir/bin"
    an "$dir/bin"; want_rc 2; has_err "binary input"
    an "$dir/bin" --json; want_rc 2; valid_json
    # garbage with a crash line inside is still binary
    { head -c 5000 "$MAPGUARD"; cat "$FIXTURES/go_writes_leak.txt"; } >"$dir/bin2"
    an "$dir/bin2"; want_rc 2; has_err "binary input"
    # one NUL in a text log is not binary
    { printf 'x\000y\n'; cat "$FIXTURES/go_writes_leak.txt"; } >"$dir/nul"
    an "$dir/nul"; want_rc 0
    ;;
truncated)
    f=$FIXTURES/go_writes_leak.txt
    # cut inside the first goroutine's stack: explained, but status 2
    head -n 4 "$f" >"$dir/t1"
    an "$dir/t1"; want_rc 2; has "concurrent map writes"; has_err "truncated input"
    an "$dir/t1" --json; want_rc 2; valid_json; json_has truncated true
    # cut in the middle of a line
    head -c 20000 "$f" >"$dir/t2"
    an "$dir/t2"; want_rc 2; has_err "truncated"
    # a JSON report cut short
    head -c 400 "$FIXTURES/mapguard_writes.json" >"$dir/t.json"
    an "$dir/t.json"; want_rc 2; has_err "truncated"
    an "$dir/t.json" --json; want_rc 2; valid_json
    # every prefix of the small fixtures: never a crash, always a verdict
    for g in "$f" "$FIXTURES/mapguard_writes.txt" "$FIXTURES/mapguard_writes.json"; do
        size=$(wc -c <"$g")
        n=1
        while [ "$n" -lt "$size" ]; do
            head -c "$n" "$g" >"$dir/p"
            an "$dir/p" --json; valid_json
            n=$((n * 3 / 2 + 7))
        done
    done
    ;;
garbage)
    awk 'BEGIN { srand(7); for (i = 0; i < 20000; i++) {
        s = ""; for (k = 0; k < 40; k++) s = s sprintf("%c", 32 + int(rand() * 95));
        print s } }' >"$dir/g"
    an "$dir/g"; want_rc 1; has_err "nothing recognisable"
    an "$dir/g" --json; want_rc 1; valid_json; json_has ok false
    # lines that look almost like the real thing
    printf 'goroutine x [running]:\ngoroutine 1 running\nthread [a]\nfatal error:\nSIG: x\n{"a": [1, 2, {"b": null}]}\n' >"$dir/near"
    an "$dir/near"; want_rc 1
    # log lines that start like a header but are not one
    printf 'SIGTERM: received, shutting down\nthread 12 [worker] started\ngoroutine 3 [running] ok\n' >"$dir/logs"
    an "$dir/logs"; want_rc 1
    # a Go crash on a signal outside Go code (cgo)
    printf 'SIGSEGV: segmentation violation\nPC=0x7f00 m=3 sigcode=1\n\ngoroutine 9 [syscall]:\nmain._Cfunc_crash()\n\t_cgo_gotypes.go:39 +0x49\nmain.main()\n\t/app/main.go:12 +0x17\n' >"$dir/sig"
    both "$dir/sig" 0 signal
    an "$dir/sig"; has "goroutine 9 [syscall] - got the signal"
    printf '{"exception.message": 3, "x": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}\n' >"$dir/deep.json"
    an "$dir/deep.json" --json; valid_json
    printf '{"exception.message": "concurrent map writes", "exception.stacktrace": "thread 7 [running]:\\nwriter(...)\\n\\t/src/app.c:31 +0x3a (app+0x11aa)\\n", "thread.id": 7}\n' >"$dir/flat.json"
    both "$dir/flat.json" 0 concurrent-map-writes
    an "$dir/flat.json"; has "thread 7 [running]"; has "at writer  /src/app.c:31"
    ;;
long_line)
    # 10 MB with no newline: nothing to find, no crash
    head -c 10485760 /dev/zero | tr '\0' 'a' >"$dir/long"
    an "$dir/long"; want_rc 1
    an "$dir/long" --json; want_rc 1; valid_json; json_has long_lines 1
    # a 10 MB line before a real crash does not hide it
    { cat "$dir/long"; printf '\n'; cat "$FIXTURES/go_writes_leak.txt"; } >"$dir/long2"
    an "$dir/long2"; want_rc 0; has "concurrent map writes"
    ;;
huge)
    # 200 MB of log lines, then the crash: read as a stream
    yes "2026-11-26T06:00:00Z INFO handled request path=/api/v1/items status=200" |
        head -c 209715200 >"$dir/huge"
    # (head cut the last line: end it, as the program's next write would)
    { printf '\n'; cat "$FIXTURES/go_writes_leak.txt"; } >>"$dir/huge"
    an "$dir/huge"; want_rc 0; has "concurrent map writes"; has "LEAK? 200 goroutines"
    # over --max-bytes: the prefix is analysed, status 2
    an "$dir/huge" --max-bytes 1000000; want_rc 2; has_err "larger than --max-bytes"
    rm -f "$dir/huge"
    ;;
many_stacks)
    # 10000 distinct stacks: 4096 groups kept, the rest counted
    awk 'BEGIN { print "fatal error: concurrent map writes\n";
        for (i = 1; i <= 10000; i++)
            printf "goroutine %d [chan receive, 9 minutes]:\nmain.f%d()\n\t/app/f.go:%d +0x1\n\n", i, i, i }' >"$dir/d"
    an "$dir/d"; want_rc 0; has "goroutines: 10000 in 4096 groups"; has "(5904 more not grouped"
    an "$dir/d" --json --top 100000; want_rc 0; valid_json; json_has groups_dropped 5904
    # 100000 identical ones: one group, one leak
    awk 'BEGIN { for (i = 1; i <= 100000; i++)
            printf "goroutine %d [chan send, 30 minutes]:\nmain.produce()\n\t/app/p.go:7 +0x1\ncreated by main.main\n\t/app/main.go:3 +0x2\n\n", i }' >"$dir/d"
    an "$dir/d"; want_rc 0
    has "100000 goroutines [chan send, 30 minutes]: main.produce  /app/p.go:7  created by main.main  /app/main.go:3"
    has "LEAK? 100000 goroutines blocked on [chan send] for 30 minutes"
    ;;
usage)
    "$MAPGUARD" analyze >"$out" 2>"$err"; rc=$?; want_rc 2; has_err "usage: mapguard analyze"
    "$MAPGUARD" analyze --bogus x >"$out" 2>"$err"; rc=$?; want_rc 2
    "$MAPGUARD" analyze --top 0 x >"$out" 2>"$err"; rc=$?; want_rc 2
    an "$dir/no-such-file"; want_rc 2; has_err "No such file"
    an "$dir"; want_rc 2; has_err "Is a directory"
    "$MAPGUARD" analyze --help >"$out" 2>"$err"; rc=$?; want_rc 0; has "Exit status"
    "$MAPGUARD" help >"$out" 2>"$err"; rc=$?; want_rc 0; has "analyze [--json] FILE|-"
    an - <"$FIXTURES/go_writes_leak.txt"; want_rc 0; has "concurrent map writes"
    ;;
# ---- integration: real crashes ------------------------------------------
go_writes) go_crash writes concurrent-map-writes
    an "$dir/stderr.txt"
    has "goroutine"; has "at main.writer"; has "created by main.main"
    has "probably the other writer" ;;
go_readwrite) go_crash readwrite concurrent-map-read-write
    an "$dir/stderr.txt"; has "at main.reader"; has "at main.writer" ;;
go_iterwrite) go_crash iterwrite concurrent-map-iteration-write
    an "$dir/stderr.txt"; has "at main.iterate"; has "at main.writer" ;;
go_nilmap) go_crash nilmap nil-map
    an "$dir/stderr.txt"; has "at main.(*registry).add"; has "fix: make() the map" ;;
go_sigquit)
    # a live program with 200 leaked workers, dumped with SIGQUIT
    go_build leak
    GOTRACEBACK=all "$dir/leak" >"$dir/leak.out" 2>"$dir/stderr.txt" &
    pid=$!
    i=0
    until grep -q ready "$dir/leak.out" 2>/dev/null; do
        i=$((i + 1)); [ "$i" -lt 600 ] || { kill -9 "$pid"; fail "leak never ready"; }
        sleep 0.1
    done
    kill -QUIT "$pid"; wait "$pid"
    both "$dir/stderr.txt" 0 goroutine-dump
    an "$dir/stderr.txt"
    has "200 goroutines [chan receive]: main.worker"
    has "3 goroutines [semacquire]: main.waitForLock"
    ;;
go_crash_dump)
    # the same program, crashing with every goroutine printed
    go_build leak
    timeout 60 "$dir/leak" -crash >/dev/null 2>"$dir/stderr.txt"
    both "$dir/stderr.txt" 0 concurrent-map-writes
    an "$dir/stderr.txt"
    has "200 goroutines [chan receive]: main.worker"
    has "at main.recordSessions"
    ;;
mg_writes | mg_nil | mg_freed | mg_wrongkey)
    what=${case_name#mg_}
    mkdir -p "$dir/reports"
    MAPGUARD_REPORT_DIR=$dir/reports timeout 60 "$MG_CRASH" "$what" 2>"$dir/stderr.txt"
    crc=$?
    if grep -q "ERROR: AddressSanitizer" "$dir/stderr.txt"; then
        # an ASan build: ASan catches the use after free before mapguard
        echo "mg_crash built with AddressSanitizer, which reported first: skipped"
        exit 77
    fi
    [ "$crc" -ge 128 ] || fail "mg_crash $what exited $crc, want an abort"
    case $what in
    writes) kind=concurrent-map-writes ;;
    nil) kind=nil-map ;;
    freed) kind=freed-map ;;
    wrongkey) kind=wrong-key-kind ;;
    esac
    both "$dir/stderr.txt" 0 "$kind"
    an "$dir/stderr.txt"; has "mapguard crash report"; has "fix: "
    if [ "$what" = writes ]; then has "at session_writer"; fi
    json=$(ls "$dir"/reports/*.json 2>/dev/null | head -n 1)
    if [ -n "$json" ]; then
        both "$json" 0 "$kind"
    else
        echo "note: no JSON report written (MAPGUARD_REPORT_DIR unsupported?)"
    fi
    ;;
*)
    echo "unknown case $case_name"; exit 1 ;;
esac
echo "ok $case_name"
exit 0
